//! The wallet's keys: BIP39 seed → SLIP-0010 ed25519 along `m/44'/8080'/<account>'/<index>'`.
//!
//! Every level is hardened (ed25519 allows nothing else). 44' is BIP44's purpose, 8080' is
//! Bitplace's coin type, `<account>'` is 0' unless chosen otherwise, `<index>'` numbers the
//! receive addresses 0', 1', 2', ... There is no separate change chain: change goes back
//! to one of the receive addresses. The address of a key is
//! `bech32m("bp", sha256(public key)[0..20])` ([`consensus::Address::from_public_key`]).

use crate::mnemonic::Mnemonic;
use crate::slip10::{DerivationError, ExtendedKey, HARDENED};
use consensus::Address;
use ed25519_dalek::SigningKey;

/// BIP44 purpose.
pub const PURPOSE: u32 = 44;
/// Bitplace's coin type in `m/44'/<coin>'/...`.
pub const COIN_TYPE: u32 = 8080;

/// The path of receive address `index` of `account`, e.g. `m/44'/8080'/0'/0'`.
pub fn derivation_path(account: u32, index: u32) -> String {
    format!("m/{PURPOSE}'/{COIN_TYPE}'/{account}'/{index}'")
}

/// The account-level key `m/44'/8080'/<account>'`, from which address keys are derived.
#[derive(Clone, Debug)]
pub struct Keychain {
    account: u32,
    account_key: ExtendedKey,
}

fn hardened(i: u32) -> Result<u32, DerivationError> {
    if i >= HARDENED {
        return Err(DerivationError::BadPath(format!(
            "index {i} is 2^31 or more"
        )));
    }
    Ok(i | HARDENED)
}

impl Keychain {
    pub fn from_seed(seed: &[u8], account: u32) -> Result<Keychain, DerivationError> {
        let account_key = ExtendedKey::master(seed).derive(&[
            hardened(PURPOSE)?,
            hardened(COIN_TYPE)?,
            hardened(account)?,
        ])?;
        Ok(Keychain {
            account,
            account_key,
        })
    }

    /// Keys of a mnemonic with an optional BIP39 passphrase ("" for none).
    pub fn from_mnemonic(
        mnemonic: &Mnemonic,
        bip39_passphrase: &str,
        account: u32,
    ) -> Result<Keychain, DerivationError> {
        Keychain::from_seed(mnemonic.to_seed(bip39_passphrase).as_slice(), account)
    }

    pub fn account(&self) -> u32 {
        self.account
    }

    /// The signing key of receive address `index`.
    pub fn signing_key(&self, index: u32) -> Result<SigningKey, DerivationError> {
        Ok(self.account_key.child(hardened(index)?)?.signing_key())
    }

    pub fn public_key(&self, index: u32) -> Result<[u8; 32], DerivationError> {
        Ok(self.signing_key(index)?.verifying_key().to_bytes())
    }

    pub fn address(&self, index: u32) -> Result<Address, DerivationError> {
        Ok(Address::from_public_key(&self.public_key(index)?))
    }

    /// The first `n` receive addresses (indices 0..n).
    pub fn addresses(&self, n: u32) -> Result<Vec<Address>, DerivationError> {
        (0..n).map(|i| self.address(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABANDON: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

    /// Cross-check vector shared with the web page: mnemonic ABANDON, empty BIP39
    /// passphrase, path m/44'/8080'/0'/0'. Also written in wallet/README.md.
    pub const ABANDON_ADDRESS_0: &str = "bp1s53gfleaqdwfaxyas5xhzsytz56arptawkt7rh";
    /// Its public key (hex), to help debug a mismatch.
    pub const ABANDON_PUBKEY_0: &str =
        "536d5feb764a094e7ac4fe773f6a262fdcd1972248a46c0285fb4985e4a2ec33";

    #[test]
    fn cross_check_vector_for_the_web_page() {
        let k = Keychain::from_mnemonic(&Mnemonic::parse(ABANDON).unwrap(), "", 0).unwrap();
        let a = k.address(0).unwrap().to_string();
        println!("{} -> {a}", derivation_path(0, 0));
        assert_eq!(hex::encode(k.public_key(0).unwrap()), ABANDON_PUBKEY_0);
        assert_eq!(a, ABANDON_ADDRESS_0);
        // Second receive address, m/44'/8080'/0'/1' (also checked with an independent
        // Python implementation: hashlib PBKDF2/HMAC + pyca ed25519 + a bech32m encoder).
        assert_eq!(
            k.address(1).unwrap().to_string(),
            "bp1s34c5a8ymvtzmt68ytxmfhjkaljjdhrnsrgqaa"
        );
    }

    #[test]
    fn keychain_matches_plain_slip10_path() {
        let m = Mnemonic::parse(ABANDON).unwrap();
        let seed = m.to_seed("TREZOR");
        let k = Keychain::from_seed(seed.as_slice(), 3).unwrap();
        let path = crate::slip10::parse_path(&derivation_path(3, 7)).unwrap();
        let direct = ExtendedKey::master(seed.as_slice()).derive(&path).unwrap();
        assert_eq!(k.public_key(7).unwrap(), direct.public_key());
        assert_eq!(derivation_path(3, 7), "m/44'/8080'/3'/7'");
    }

    #[test]
    fn addresses_are_distinct_and_depend_on_passphrase_and_account() {
        let m = Mnemonic::parse(ABANDON).unwrap();
        let a = Keychain::from_mnemonic(&m, "", 0)
            .unwrap()
            .addresses(5)
            .unwrap();
        let mut dedup = a.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), 5);
        let b = Keychain::from_mnemonic(&m, "x", 0)
            .unwrap()
            .address(0)
            .unwrap();
        let c = Keychain::from_mnemonic(&m, "", 1)
            .unwrap()
            .address(0)
            .unwrap();
        assert!(b != a[0] && c != a[0] && b != c);
        assert!(Keychain::from_mnemonic(&m, "", 0)
            .unwrap()
            .address(HARDENED)
            .is_err());
    }
}
