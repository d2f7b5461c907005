//! The keystore: one JSON file holding the mnemonic (and BIP39 passphrase) encrypted at
//! rest, plus the public receive addresses handed out so far.
//!
//! Encryption: key = argon2id(passphrase, 16-byte random salt, stored m/t/p parameters)
//! → 32 bytes; XChaCha20-Poly1305 with a 24-byte random nonce (new on every write). The
//! associated data binds the format version, the KDF parameters, the account and the
//! address list, so editing any of them makes unlocking fail. A wrong passphrase is
//! [`KeystoreError::WrongPassphrase`]. The file is created with mode 0600 (`create_new`:
//! an existing wallet is never overwritten by `create`); updates are written to a new
//! 0600 file and renamed over the old one.
//!
//! The addresses are kept in clear (they are public, like an xpub's) so that `balance`,
//! `history` and `watch` work without the passphrase; their count is the number of
//! addresses handed out. On unlock they are re-derived and compared.

use crate::keys::Keychain;
use crate::mnemonic::{Mnemonic, MnemonicError};
use crate::slip10::DerivationError;
use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use consensus::Address;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub const FORMAT: &str = "bitplace-wallet-keystore";
pub const VERSION: u32 = 1;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
/// Refuse files asking for absurd KDF work (a crafted file must not hang or OOM us).
const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 16;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    #[error("wrong passphrase (or the wallet file {0} was modified)")]
    WrongPassphrase(PathBuf),
    #[error("a wallet already exists at {0}; refusing to overwrite it")]
    Exists(PathBuf),
    #[error("no wallet at {0} (create one with `bitplace-wallet create` or `import`)")]
    NotFound(PathBuf),
    #[error("wallet file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("wallet file {path} is not a valid keystore: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("the wallet passphrase must not be empty")]
    EmptyPassphrase,
    #[error("key derivation (argon2id) failed: {0}")]
    Kdf(String),
    #[error("the system random number generator failed: {0}")]
    Random(String),
    #[error("wallet file {0}: its addresses do not match its keys")]
    AddressMismatch(PathBuf),
    #[error(transparent)]
    Mnemonic(#[from] MnemonicError),
    #[error(transparent)]
    Derivation(#[from] DerivationError),
}

/// argon2id cost parameters, stored in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// 64 MiB, 3 passes, 1 lane (RFC 9106's second recommendation, one lane).
    pub const DEFAULT: KdfParams = KdfParams {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };
    /// Cheap parameters for tests only.
    pub const INSECURE_FAST: KdfParams = KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams::DEFAULT
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct KdfSection {
    name: String,
    version: u32,
    #[serde(flatten)]
    params: KdfParams,
    salt: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CipherSection {
    name: String,
    nonce: String,
}

/// The on-disk JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct KeystoreFile {
    format: String,
    version: u32,
    kdf: KdfSection,
    cipher: CipherSection,
    ciphertext: String,
    account: u32,
    /// Receive addresses handed out, index i at m/44'/8080'/account'/i'.
    addresses: Vec<Address>,
}

/// The encrypted payload.
#[derive(Serialize, Deserialize)]
struct SecretPayload {
    mnemonic: String,
    bip39_passphrase: String,
}

/// A keystore file, opened but not unlocked.
#[derive(Debug)]
pub struct Keystore {
    path: PathBuf,
    file: KeystoreFile,
}

/// An unlocked wallet: the keys, and the file key to re-seal the keystore.
pub struct UnlockedWallet {
    keychain: Keychain,
    mnemonic: Mnemonic,
    bip39_passphrase: Zeroizing<String>,
    file_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for UnlockedWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnlockedWallet(redacted)")
    }
}

impl UnlockedWallet {
    pub fn keychain(&self) -> &Keychain {
        &self.keychain
    }
    pub fn mnemonic(&self) -> &Mnemonic {
        &self.mnemonic
    }
}

fn random<const N: usize>() -> Result<[u8; N], KeystoreError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| KeystoreError::Random(e.to_string()))?;
    Ok(b)
}

fn derive_file_key(
    passphrase: &str,
    salt: &[u8],
    p: KdfParams,
) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let params = Params::new(p.m_cost_kib, p.t_cost, p.p_cost, Some(32))
        .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut_slice())
        .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    Ok(key)
}

impl KeystoreFile {
    /// Associated data: everything in the file that is not the ciphertext or the nonce.
    fn aad(&self) -> Vec<u8> {
        let addrs: Vec<String> = self.addresses.iter().map(|a| a.to_string()).collect();
        format!(
            "{}/v{}/kdf={}:v{}:m={}:t={}:p={}:salt={}/cipher={}/account={}/addresses={}",
            self.format,
            self.version,
            self.kdf.name,
            self.kdf.version,
            self.kdf.params.m_cost_kib,
            self.kdf.params.t_cost,
            self.kdf.params.p_cost,
            self.kdf.salt,
            self.cipher.name,
            self.account,
            addrs.join(",")
        )
        .into_bytes()
    }

    /// Encrypts the secrets under `key` with a fresh nonce (call after any header change).
    fn seal(&mut self, key: &[u8; 32], secrets: &SecretPayload) -> Result<(), KeystoreError> {
        let nonce: [u8; NONCE_LEN] = random()?;
        let plaintext = Zeroizing::new(serde_json::to_vec(secrets).expect("serializable"));
        let aad = self.aad();
        let ciphertext = XChaCha20Poly1305::new(key.into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| KeystoreError::Kdf("encryption failed".into()))?;
        self.cipher.nonce = hex::encode(nonce);
        self.ciphertext = hex::encode(ciphertext);
        Ok(())
    }
}

fn format_err(path: &Path, reason: impl Into<String>) -> KeystoreError {
    KeystoreError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeystoreError + '_ {
    move |source| KeystoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens `path` for writing a new file: must not exist; mode 0600 on Unix.
fn create_new_private(path: &Path) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

fn ensure_parent_dir(path: &Path) -> Result<(), KeystoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            let mut b = fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                b.mode(0o700);
            }
            b.create(dir).map_err(io_err(dir))?;
        }
    }
    Ok(())
}

impl Keystore {
    /// Creates a new keystore at `path` (which must not exist) for `mnemonic`, encrypted
    /// under `passphrase`, with receive address 0 handed out.
    pub fn create(
        path: &Path,
        mnemonic: &Mnemonic,
        bip39_passphrase: &str,
        passphrase: &str,
        kdf: KdfParams,
    ) -> Result<(Keystore, UnlockedWallet), KeystoreError> {
        Keystore::create_with_addresses(path, mnemonic, bip39_passphrase, passphrase, kdf, 1)
    }

    /// Like [`Keystore::create`], with receive addresses `0..count` handed out (a restore
    /// keeps every address its scan found used; at least one).
    pub fn create_with_addresses(
        path: &Path,
        mnemonic: &Mnemonic,
        bip39_passphrase: &str,
        passphrase: &str,
        kdf: KdfParams,
        count: u32,
    ) -> Result<(Keystore, UnlockedWallet), KeystoreError> {
        if passphrase.is_empty() {
            return Err(KeystoreError::EmptyPassphrase);
        }
        if path.exists() {
            return Err(KeystoreError::Exists(path.to_path_buf()));
        }
        let account = 0;
        let keychain = Keychain::from_mnemonic(mnemonic, bip39_passphrase, account)?;
        let salt: [u8; SALT_LEN] = random()?;
        let file_key = derive_file_key(passphrase, &salt, kdf)?;
        let mut file = KeystoreFile {
            format: FORMAT.into(),
            version: VERSION,
            kdf: KdfSection {
                name: "argon2id".into(),
                version: 0x13,
                params: kdf,
                salt: hex::encode(salt),
            },
            cipher: CipherSection {
                name: "xchacha20poly1305".into(),
                nonce: String::new(),
            },
            ciphertext: String::new(),
            account,
            addresses: keychain.addresses(count.max(1))?,
        };
        let wallet = UnlockedWallet {
            keychain,
            mnemonic: mnemonic.clone(),
            bip39_passphrase: Zeroizing::new(bip39_passphrase.to_string()),
            file_key,
        };
        file.seal(&wallet.file_key, &wallet.payload())?;
        ensure_parent_dir(path)?;
        let mut f = create_new_private(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeystoreError::Exists(path.to_path_buf())
            } else {
                io_err(path)(e)
            }
        })?;
        let json = serde_json::to_vec_pretty(&file).expect("serializable");
        f.write_all(&json)
            .and_then(|_| f.sync_all())
            .map_err(io_err(path))?;
        Ok((
            Keystore {
                path: path.to_path_buf(),
                file,
            },
            wallet,
        ))
    }

    /// Reads and checks the file's structure (no passphrase needed).
    pub fn open(path: &Path) -> Result<Keystore, KeystoreError> {
        let bytes = fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                KeystoreError::NotFound(path.to_path_buf())
            } else {
                io_err(path)(e)
            }
        })?;
        let file: KeystoreFile =
            serde_json::from_slice(&bytes).map_err(|e| format_err(path, e.to_string()))?;
        if file.format != FORMAT || file.version != VERSION {
            return Err(format_err(
                path,
                format!("unsupported format {} v{}", file.format, file.version),
            ));
        }
        if file.kdf.name != "argon2id" || file.kdf.version != 0x13 {
            return Err(format_err(path, "unsupported key derivation"));
        }
        let p = file.kdf.params;
        if p.m_cost_kib > MAX_M_COST_KIB || p.t_cost > MAX_T_COST || p.p_cost > MAX_P_COST {
            return Err(format_err(path, "key derivation parameters out of range"));
        }
        if file.cipher.name != "xchacha20poly1305" {
            return Err(format_err(path, "unsupported cipher"));
        }
        let salt_ok = hex::decode(&file.kdf.salt).is_ok_and(|s| s.len() == SALT_LEN);
        let nonce_ok = hex::decode(&file.cipher.nonce).is_ok_and(|n| n.len() == NONCE_LEN);
        if !salt_ok || !nonce_ok || hex::decode(&file.ciphertext).is_err() {
            return Err(format_err(path, "bad salt, nonce or ciphertext"));
        }
        if file.addresses.is_empty() {
            return Err(format_err(path, "no addresses"));
        }
        Ok(Keystore {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The receive addresses handed out so far (index order).
    pub fn addresses(&self) -> &[Address] {
        &self.file.addresses
    }

    pub fn kdf_params(&self) -> KdfParams {
        self.file.kdf.params
    }

    /// Decrypts the mnemonic. A wrong passphrase is [`KeystoreError::WrongPassphrase`].
    pub fn unlock(&self, passphrase: &str) -> Result<UnlockedWallet, KeystoreError> {
        let salt =
            hex::decode(&self.file.kdf.salt).map_err(|e| format_err(&self.path, e.to_string()))?;
        let nonce = hex::decode(&self.file.cipher.nonce)
            .map_err(|e| format_err(&self.path, e.to_string()))?;
        let ciphertext = hex::decode(&self.file.ciphertext)
            .map_err(|e| format_err(&self.path, e.to_string()))?;
        let file_key = derive_file_key(passphrase, &salt, self.file.kdf.params)?;
        let aad = self.file.aad();
        let plaintext = Zeroizing::new(
            XChaCha20Poly1305::new((&*file_key).into())
                .decrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| KeystoreError::WrongPassphrase(self.path.clone()))?,
        );
        let payload: SecretPayload = serde_json::from_slice(&plaintext)
            .map_err(|_| format_err(&self.path, "decrypted payload is malformed"))?;
        let mnemonic = Mnemonic::parse(&payload.mnemonic)?;
        let bip39_passphrase = Zeroizing::new(payload.bip39_passphrase.clone());
        let keychain = Keychain::from_mnemonic(&mnemonic, &bip39_passphrase, self.file.account)?;
        for (i, a) in self.file.addresses.iter().enumerate() {
            if keychain.address(i as u32)? != *a {
                return Err(KeystoreError::AddressMismatch(self.path.clone()));
            }
        }
        Ok(UnlockedWallet {
            keychain,
            mnemonic,
            bip39_passphrase,
            file_key,
        })
    }

    /// Hands out the next receive address and saves the file (re-sealed, new nonce).
    pub fn new_address(&mut self, wallet: &UnlockedWallet) -> Result<Address, KeystoreError> {
        let index = self.file.addresses.len() as u32;
        let address = wallet.keychain.address(index)?;
        let mut file = self.file.clone();
        file.addresses.push(address);
        file.seal(&wallet.file_key, &wallet.payload())?;
        self.replace(&file)?;
        self.file = file;
        Ok(address)
    }

    /// Hands out addresses up to index `count - 1` (a rescan that found used addresses
    /// past the last one handed out); returns how many were added. Saves only if any were.
    pub fn ensure_addresses(
        &mut self,
        wallet: &UnlockedWallet,
        count: u32,
    ) -> Result<u32, KeystoreError> {
        let have = self.file.addresses.len() as u32;
        if count <= have {
            return Ok(0);
        }
        let mut file = self.file.clone();
        for i in have..count {
            file.addresses.push(wallet.keychain.address(i)?);
        }
        file.seal(&wallet.file_key, &wallet.payload())?;
        self.replace(&file)?;
        self.file = file;
        Ok(count - have)
    }

    /// Atomically replaces the file: write a 0600 sibling, fsync, rename, fsync the dir.
    fn replace(&self, file: &KeystoreFile) -> Result<(), KeystoreError> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = fs::remove_file(&tmp);
        let json = serde_json::to_vec_pretty(file).expect("serializable");
        let result = create_new_private(&tmp)
            .and_then(|mut f| f.write_all(&json).and_then(|_| f.sync_all()))
            .and_then(|_| fs::rename(&tmp, &self.path));
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&self.path)(e));
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl UnlockedWallet {
    fn payload(&self) -> SecretPayload {
        SecretPayload {
            mnemonic: self.mnemonic.phrase().to_string(),
            bip39_passphrase: self.bip39_passphrase.to_string(),
        }
    }
}

impl Drop for SecretPayload {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.mnemonic.zeroize();
        self.bip39_passphrase.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHRASE: &str =
        "legal winner thank year wave sausage worth useful legal winner thank yellow";

    fn new_store(dir: &Path, bip39: &str) -> (Keystore, UnlockedWallet) {
        let m = Mnemonic::parse(PHRASE).unwrap();
        Keystore::create(
            &dir.join("w.json"),
            &m,
            bip39,
            "correct horse battery",
            KdfParams::INSECURE_FAST,
        )
        .unwrap()
    }

    #[test]
    fn round_trip_and_addresses_match_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (ks, w) = new_store(dir.path(), "extra words");
        let again = Keystore::open(ks.path()).unwrap();
        let u = again.unlock("correct horse battery").unwrap();
        assert_eq!(u.mnemonic().phrase().as_str(), PHRASE);
        assert_eq!(again.addresses(), &[w.keychain().address(0).unwrap()]);
        let expected = Keychain::from_mnemonic(&Mnemonic::parse(PHRASE).unwrap(), "extra words", 0)
            .unwrap()
            .address(0)
            .unwrap();
        assert_eq!(again.addresses()[0], expected);
    }

    #[test]
    fn wrong_passphrase_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let (ks, _) = new_store(dir.path(), "");
        let err = ks.unlock("correct horse batterY").unwrap_err();
        assert!(matches!(err, KeystoreError::WrongPassphrase(_)), "{err}");
        assert!(err.to_string().contains("wrong passphrase"));
    }

    #[test]
    fn file_holds_no_secret_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let (ks, w) = new_store(dir.path(), "my bip39 passphrase");
        let text = fs::read_to_string(ks.path()).unwrap();
        let raw = fs::read(ks.path()).unwrap();
        for word in PHRASE.split(' ') {
            assert!(!text.contains(word), "word {word} in clear");
        }
        assert!(!text.contains("my bip39 passphrase"));
        assert!(!text.contains("correct horse"));
        let key = w.keychain().signing_key(0).unwrap().to_bytes();
        let seed = Mnemonic::parse(PHRASE)
            .unwrap()
            .to_seed("my bip39 passphrase");
        let entropy = Mnemonic::parse(PHRASE).unwrap().entropy();
        for secret in [&key[..], &seed[..], &entropy[..]] {
            let h = hex::encode(secret);
            assert!(!text.contains(&h) && !text.contains(&h.to_uppercase()));
            assert!(!raw.windows(secret.len()).any(|win| win == secret));
        }
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["kdf"]["name"], "argon2id");
        assert_eq!(v["kdf"]["m_cost_kib"], 64);
        assert_eq!(v["cipher"]["name"], "xchacha20poly1305");
    }

    #[cfg(unix)]
    #[test]
    fn file_mode_is_0600_also_after_update() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (mut ks, w) = new_store(dir.path(), "");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(ks.path()), 0o600);
        ks.new_address(&w).unwrap();
        assert_eq!(mode(ks.path()), 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file left"
        );
    }

    #[test]
    fn create_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        new_store(dir.path(), "");
        let m = Mnemonic::parse(PHRASE).unwrap();
        let err = Keystore::create(
            &dir.path().join("w.json"),
            &m,
            "",
            "x",
            KdfParams::INSECURE_FAST,
        )
        .unwrap_err();
        assert!(matches!(err, KeystoreError::Exists(_)));
        let err = Keystore::create(
            &dir.path().join("v.json"),
            &m,
            "",
            "",
            KdfParams::INSECURE_FAST,
        )
        .unwrap_err();
        assert!(matches!(err, KeystoreError::EmptyPassphrase));
    }

    #[test]
    fn new_addresses_are_counted_persisted_and_resealed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ks, w) = new_store(dir.path(), "");
        let before = fs::read_to_string(ks.path()).unwrap();
        let a1 = ks.new_address(&w).unwrap();
        let a2 = ks.new_address(&w).unwrap();
        assert_eq!(a1, w.keychain().address(1).unwrap());
        assert_eq!(a2, w.keychain().address(2).unwrap());
        let reopened = Keystore::open(ks.path()).unwrap();
        assert_eq!(reopened.addresses().len(), 3);
        reopened.unlock("correct horse battery").unwrap();
        let after: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(ks.path()).unwrap()).unwrap();
        let before: serde_json::Value = serde_json::from_str(&before).unwrap();
        assert_ne!(after["cipher"]["nonce"], before["cipher"]["nonce"]);
        assert_eq!(after["kdf"]["salt"], before["kdf"]["salt"]);
    }

    #[test]
    fn a_restore_keeps_every_address_found_and_a_rescan_adds_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mnemonic::parse(PHRASE).unwrap();
        let (mut ks, w) = Keystore::create_with_addresses(
            &dir.path().join("w.json"),
            &m,
            "",
            "pw",
            KdfParams::INSECURE_FAST,
            3,
        )
        .unwrap();
        assert_eq!(ks.addresses(), w.keychain().addresses(3).unwrap());
        assert_eq!(ks.ensure_addresses(&w, 2).unwrap(), 0);
        assert_eq!(ks.ensure_addresses(&w, 5).unwrap(), 2);
        let reopened = Keystore::open(ks.path()).unwrap();
        assert_eq!(reopened.addresses(), w.keychain().addresses(5).unwrap());
        reopened.unlock("pw").unwrap();
    }

    #[test]
    fn tampered_header_fails_to_unlock() {
        let dir = tempfile::tempdir().unwrap();
        let (ks, _) = new_store(dir.path(), "");
        let mut v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(ks.path()).unwrap()).unwrap();
        // Swap in an attacker's address: the AEAD's associated data no longer matches.
        v["addresses"][0] = serde_json::json!(Address([7; 20]).to_string());
        fs::write(ks.path(), serde_json::to_vec(&v).unwrap()).unwrap();
        let err = Keystore::open(ks.path())
            .unwrap()
            .unlock("correct horse battery");
        assert!(matches!(err, Err(KeystoreError::WrongPassphrase(_))));
        fs::write(ks.path(), b"{not json").unwrap();
        assert!(matches!(
            Keystore::open(ks.path()),
            Err(KeystoreError::Format { .. })
        ));
        assert!(matches!(
            Keystore::open(&dir.path().join("missing.json")),
            Err(KeystoreError::NotFound(_))
        ));
    }

    #[test]
    fn default_kdf_parameters_work() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mnemonic::parse(PHRASE).unwrap();
        let (ks, _) =
            Keystore::create(&dir.path().join("w.json"), &m, "", "pw", KdfParams::DEFAULT).unwrap();
        assert_eq!(
            Keystore::open(ks.path()).unwrap().kdf_params(),
            KdfParams::DEFAULT
        );
        ks.unlock("pw").unwrap();
    }
}
