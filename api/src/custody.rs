//! Dev-mode custody wallets: BIP39 wallets the node itself holds so the seeds' clients
//! (Pocket's stand: `new_wallet`, `send` by address) work. Only ever opened with `--dev`.
//! The mnemonics sit in plain JSON in the data directory (mode 0600) — these are dev
//! keys for a throwaway network; no route returns a private key, and a mnemonic is
//! returned once, at creation (`/wallet/new`).

use ed25519_dalek::SigningKey;
use engine::Address;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use wallet::{Keychain, Mnemonic};
use zeroize::Zeroizing;

pub const FILE_NAME: &str = "dev-wallets.json";

#[derive(Debug, thiserror::Error)]
pub enum CustodyError {
    #[error("cannot read or write the dev wallet file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the dev wallet file {0} is damaged: {1}")]
    Damaged(PathBuf, String),
    #[error("key derivation failed: {0}")]
    Keys(String),
}

struct Held {
    mnemonic: Mnemonic,
    key: SigningKey,
    address: Address,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    address: String,
    mnemonic: String,
}

pub struct Custody {
    path: PathBuf,
    wallets: Mutex<Vec<Held>>,
}

/// A wallet as listed to clients: no secrets.
#[derive(Clone, Debug)]
pub struct WalletInfo {
    pub address: Address,
    pub public_key: [u8; 32],
}

fn derive(mnemonic: Mnemonic) -> Result<Held, CustodyError> {
    let chain =
        Keychain::from_mnemonic(&mnemonic, "", 0).map_err(|e| CustodyError::Keys(e.to_string()))?;
    let key = chain
        .signing_key(0)
        .map_err(|e| CustodyError::Keys(e.to_string()))?;
    let address = Address::from_public_key(&key.verifying_key().to_bytes());
    Ok(Held {
        mnemonic,
        key,
        address,
    })
}

impl Custody {
    /// Loads `dir/dev-wallets.json` if it exists.
    pub fn open(dir: &Path) -> Result<Custody, CustodyError> {
        let path = dir.join(FILE_NAME);
        let mut wallets = Vec::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let stored: Vec<Stored> = serde_json::from_slice(&bytes)
                    .map_err(|e| CustodyError::Damaged(path.clone(), e.to_string()))?;
                for s in stored {
                    let m = Mnemonic::parse(&s.mnemonic)
                        .map_err(|e| CustodyError::Damaged(path.clone(), e.to_string()))?;
                    wallets.push(derive(m)?);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(CustodyError::Io { path, source }),
        }
        Ok(Custody {
            path,
            wallets: Mutex::new(wallets),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Held>> {
        self.wallets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, wallets: &[Held]) -> Result<(), CustodyError> {
        let stored: Vec<Stored> = wallets
            .iter()
            .map(|w| Stored {
                address: w.address.to_string(),
                mnemonic: w.mnemonic.phrase().to_string(),
            })
            .collect();
        let bytes = Zeroizing::new(serde_json::to_vec_pretty(&stored).expect("plain data"));
        let tmp = self.path.with_extension("json.tmp");
        let io = |source| CustodyError::Io {
            path: self.path.clone(),
            source,
        };
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        // Rename is atomic: a crash leaves the old file or the new one, never half.
        std::fs::rename(&tmp, &self.path).map_err(io)
    }

    /// Makes a new wallet; returns it with its mnemonic (the only time it is shown).
    pub fn create(&self) -> Result<(WalletInfo, Zeroizing<String>), CustodyError> {
        let m = Mnemonic::generate(12).map_err(|e| CustodyError::Keys(e.to_string()))?;
        let held = derive(m)?;
        let info = info(&held);
        let phrase = held.mnemonic.phrase();
        let mut g = self.lock();
        g.push(held);
        if let Err(e) = self.save(&g) {
            g.pop();
            return Err(e);
        }
        Ok((info, phrase))
    }

    /// Forgets every wallet and makes `n` new ones (dev reset).
    pub fn replace_all(&self, n: usize) -> Result<Vec<WalletInfo>, CustodyError> {
        let fresh = (0..n)
            .map(|_| {
                let m = Mnemonic::generate(12).map_err(|e| CustodyError::Keys(e.to_string()))?;
                derive(m)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut g = self.lock();
        self.save(&fresh)?;
        *g = fresh;
        Ok(g.iter().map(info).collect())
    }

    pub fn list(&self) -> Vec<WalletInfo> {
        self.lock().iter().map(info).collect()
    }

    /// The signing key of a held address (used inside the node only, never returned).
    pub fn key(&self, address: &Address) -> Option<SigningKey> {
        self.lock()
            .iter()
            .find(|w| w.address == *address)
            .map(|w| w.key.clone())
    }
}

fn info(w: &Held) -> WalletInfo {
    WalletInfo {
        address: w.address,
        public_key: w.key.verifying_key().to_bytes(),
    }
}
