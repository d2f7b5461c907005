//! The known peers on disk, so a restart does not forget the peers registered at run
//! time: `<data-dir>/peers.json`, `{"version": 1, "peers": [{url, source, added_at}]}`.
//!
//! Written whole on every change, atomically: a temporary file beside it, fsync'd, then
//! renamed over it and the directory fsync'd, so a crash leaves the old list or the new
//! one, never half of one. Only how the node learned of each peer is kept; health
//! (failures, bans, back-off) starts afresh, as it would for a peer seen for the first time.

use super::PeerSource;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The file's name inside the data directory.
pub const PEERS_FILE: &str = "peers.json";
/// Format version written; a file with another one is not read.
const VERSION: u32 = 1;

/// One saved peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPeer {
    pub url: String,
    pub source: PeerSource,
    pub added_at: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerList {
    version: u32,
    peers: Vec<SavedPeer>,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerFileError {
    #[error("cannot read {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} is not a peer list: {source}", .path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{} has format version {found}, this node reads {VERSION}", .path.display())]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write {}: {source}", .path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// Where the peer list is kept.
#[derive(Clone, Debug)]
pub struct PeerFile {
    path: PathBuf,
}

impl PeerFile {
    pub fn new(path: impl Into<PathBuf>) -> PeerFile {
        PeerFile { path: path.into() }
    }

    /// `peers.json` in `data_dir`.
    pub fn in_dir(data_dir: &Path) -> PeerFile {
        PeerFile::new(data_dir.join(PEERS_FILE))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved peers; none if the file does not exist yet.
    pub fn load(&self) -> Result<Vec<SavedPeer>, PeerFileError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(self.err_read(source)),
        };
        let list: PeerList =
            serde_json::from_slice(&bytes).map_err(|source| PeerFileError::Parse {
                path: self.path.clone(),
                source,
            })?;
        if list.version != VERSION {
            return Err(PeerFileError::Version {
                path: self.path.clone(),
                found: list.version,
            });
        }
        Ok(list.peers)
    }

    /// Replaces the saved list with `peers`, atomically and durably.
    pub fn save(&self, peers: &[SavedPeer]) -> Result<(), PeerFileError> {
        let list = PeerList {
            version: VERSION,
            peers: peers.to_vec(),
        };
        // Serialising plain strings and numbers cannot fail.
        let mut bytes = serde_json::to_vec_pretty(&list).unwrap_or_default();
        bytes.push(b'\n');
        let tmp = self.tmp_path();
        self.write_synced(&tmp, &bytes)
            .and_then(|()| fs::rename(&tmp, &self.path))
            .and_then(|()| self.sync_dir())
            .map_err(|source| {
                // Best effort: do not leave a stray temporary file behind.
                let _ = fs::remove_file(&tmp);
                PeerFileError::Write {
                    path: self.path.clone(),
                    source,
                }
            })
    }

    /// Renames an unreadable list to `peers.json.bad` (replacing an older one), so the
    /// next save does not destroy what someone may want to look at; returns the new path.
    pub fn set_aside(&self) -> io::Result<PathBuf> {
        let bad = self.sibling(".bad");
        fs::rename(&self.path, &bad)?;
        Ok(bad)
    }

    fn tmp_path(&self) -> PathBuf {
        self.sibling(".tmp")
    }

    /// `peers.json<suffix>` beside the list.
    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        self.path.with_file_name(name)
    }

    fn write_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut f = File::create(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    }

    /// Makes the rename itself durable: it is an entry in the directory.
    fn sync_dir(&self) -> io::Result<()> {
        #[cfg(unix)]
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn err_read(&self, source: io::Error) -> PeerFileError {
        PeerFileError::Read {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(url: &str) -> SavedPeer {
        SavedPeer {
            url: url.into(),
            source: PeerSource::Registered,
            added_at: 1_795_000_000,
        }
    }

    #[test]
    fn saves_and_loads_the_same_list_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = PeerFile::in_dir(dir.path());
        assert_eq!(file.load().unwrap(), vec![], "no file yet: no peers");
        let peers = vec![peer("http://10.0.0.1:8080"), peer("http://10.0.0.2:8080")];
        file.save(&peers).unwrap();
        file.save(&peers[..1]).unwrap();
        assert_eq!(file.load().unwrap(), peers[..1]);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![PEERS_FILE]);
    }

    #[test]
    fn corrupt_or_foreign_files_are_errors_not_peers() {
        let dir = tempfile::tempdir().unwrap();
        let file = PeerFile::in_dir(dir.path());
        for (content, want) in [
            ("{\"version\": 1, \"peers\": [", "not a peer list"),
            ("[\"http://10.0.0.1\"]", "not a peer list"),
            ("{\"version\": 9, \"peers\": []}", "format version 9"),
        ] {
            fs::write(file.path(), content).unwrap();
            let e = file.load().unwrap_err().to_string();
            assert!(e.contains(want), "{content}: {e}");
        }
    }

    #[test]
    fn a_failed_save_keeps_the_old_list() {
        let dir = tempfile::tempdir().unwrap();
        let file = PeerFile::in_dir(dir.path());
        file.save(&[peer("http://10.0.0.1:8080")]).unwrap();
        // A directory where the temporary file should go makes the write fail.
        fs::create_dir(dir.path().join("peers.json.tmp")).unwrap();
        let e = file.save(&[]).unwrap_err();
        assert!(matches!(e, PeerFileError::Write { .. }), "{e}");
        assert_eq!(file.load().unwrap(), vec![peer("http://10.0.0.1:8080")]);
    }
}
