//! [`Table`]: the fixed set of byte→byte tables in a BlazeDB file.

/// The tables of a BlazeDB file. All map bytes to bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// Database-wide records: format and key check, whether changes are captured, index
    /// catalog.
    Meta,
    /// Collection catalog: collection tag → sealed collection record.
    Catalog,
    /// Documents: collection tag ‖ id tag → sealed document.
    Docs,
    /// Change log: sequence number (u64 big-endian) → sealed change entry.
    Changes,
    /// Auxiliary records of higher layers (sync metadata): namespace tag ‖ key tag →
    /// sealed record.
    Aux,
    /// Secondary-index nodes: index tag ‖ node id (u64 big-endian) → sealed node.
    Index,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 6] = [
        Table::Meta,
        Table::Catalog,
        Table::Docs,
        Table::Changes,
        Table::Aux,
        Table::Index,
    ];

    /// The table's name in the file (and in error messages).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Catalog => "catalog",
            Table::Docs => "docs",
            Table::Changes => "changes",
            Table::Aux => "aux",
            Table::Index => "index",
        }
    }

    /// A one-byte code for the table, used to bind sealed values to their table.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Table::Meta => 1,
            Table::Catalog => 2,
            Table::Docs => 3,
            Table::Changes => 4,
            Table::Aux => 5,
            Table::Index => 6,
        }
    }

    /// The table with [`Table::code`] `code`.
    #[must_use]
    pub fn from_code(code: u8) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.code() == code)
    }

    pub(crate) fn index(self) -> usize {
        self.code() as usize - 1
    }

    pub(crate) fn def(self) -> redb::TableDefinition<'static, &'static [u8], &'static [u8]> {
        redb::TableDefinition::new(self.name())
    }
}
