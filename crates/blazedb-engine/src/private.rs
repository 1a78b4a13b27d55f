//! Files and directories only their owner may use: every file BlazeDB creates (key
//! file, data file, `LOCK`, backups) is mode 0600 from its creation on, every directory
//! it creates 0700 (on Unix; the process umask can only narrow these). Existing files
//! and directories keep their modes: nothing here widens or changes them.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::path::Path;

/// Options that create files with mode 0600.
pub(crate) fn file_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}

/// Creates the new file `path` (which must not exist), mode 0600, for writing.
pub(crate) fn create_new_file(path: &Path) -> io::Result<File> {
    file_options().write(true).create_new(true).open(path)
}

fn dir_builder(recursive: bool) -> DirBuilder {
    let mut b = DirBuilder::new();
    b.recursive(recursive);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b
}

/// Creates the new directory `path` (which must not exist), mode 0700.
pub(crate) fn create_dir(path: &Path) -> io::Result<()> {
    dir_builder(false).create(path)
}

/// Creates `path` and any missing parents, each new one mode 0700; existing ones are
/// left as they are.
pub(crate) fn create_dir_all(path: &Path) -> io::Result<()> {
    dir_builder(true).create(path)
}
