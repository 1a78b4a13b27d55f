//! [`Patch`]: fields to set and fields to remove on an existing document.

use blazedb_core::document::validate_fields;
use blazedb_core::name::check_field_name;
use blazedb_core::{Error, Fields, Result};

/// Fields to set and fields to remove on an existing document.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Patch {
    pub set: Fields,
    pub unset: Vec<String>,
}

impl Patch {
    /// An empty patch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `field` to `value`, builder style.
    #[must_use]
    pub fn set(mut self, field: &str, value: impl Into<blazedb_core::Value>) -> Self {
        self.set.insert(field.to_owned(), value.into());
        self
    }

    /// Removes `field`, builder style.
    #[must_use]
    pub fn unset(mut self, field: &str) -> Self {
        self.unset.push(field.to_owned());
        self
    }

    pub(super) fn validate(&self) -> Result<()> {
        validate_fields(&self.set)?;
        for f in &self.unset {
            check_field_name(f)?;
            if self.set.contains_key(f) {
                return Err(Error::InvalidValue {
                    reason: format!("patch both sets and unsets field '{f}'"),
                });
            }
        }
        Ok(())
    }
}
