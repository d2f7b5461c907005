//! BIP39 mnemonics (English word list): generation, import with checksum check, seed.
//!
//! The seed is PBKDF2-HMAC-SHA512, 2048 rounds, salt `"mnemonic" + passphrase` (NFKD),
//! exactly as BIP39 says — the web page derives the same seed with WebCrypto.

use zeroize::Zeroizing;

/// Why a phrase is not a valid mnemonic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MnemonicError {
    #[error("a mnemonic has 12, 15, 18, 21 or 24 words, got {0}")]
    WordCount(usize),
    #[error("word {position} of the mnemonic, `{word}`, is not in the BIP39 English word list")]
    UnknownWord { position: usize, word: String },
    #[error("the mnemonic's checksum does not match: a word is wrong or out of order")]
    Checksum,
    #[error("a new mnemonic has 12 or 24 words, not {0}")]
    UnsupportedLength(usize),
    #[error("the system random number generator failed: {0}")]
    Random(String),
    #[error("invalid mnemonic: {0}")]
    Other(String),
}

/// A checked BIP39 mnemonic. Its words are wiped from memory when it is dropped.
#[derive(Clone)]
pub struct Mnemonic(bip39::Mnemonic);

impl std::fmt::Debug for Mnemonic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mnemonic({} words, redacted)", self.word_count())
    }
}

impl Mnemonic {
    /// A fresh mnemonic of 12 (128-bit) or 24 (256-bit) words from the OS random source.
    pub fn generate(words: usize) -> Result<Mnemonic, MnemonicError> {
        let len = match words {
            12 => 16,
            24 => 32,
            n => return Err(MnemonicError::UnsupportedLength(n)),
        };
        let mut entropy = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut entropy[..len]).map_err(|e| MnemonicError::Random(e.to_string()))?;
        Mnemonic::from_entropy(&entropy[..len])
    }

    /// The mnemonic that encodes `entropy` (16, 20, 24, 28 or 32 bytes).
    pub fn from_entropy(entropy: &[u8]) -> Result<Mnemonic, MnemonicError> {
        bip39::Mnemonic::from_entropy(entropy)
            .map(Mnemonic)
            .map_err(|e| MnemonicError::Other(e.to_string()))
    }

    /// Parses a phrase typed by a person: case and extra whitespace are ignored; the
    /// checksum is verified; an unknown word is named in the error.
    pub fn parse(phrase: &str) -> Result<Mnemonic, MnemonicError> {
        let normalized = Zeroizing::new(
            phrase
                .split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
                .join(" "),
        );
        bip39::Mnemonic::parse_in(bip39::Language::English, normalized.as_str())
            .map(Mnemonic)
            .map_err(|e| match e {
                bip39::Error::BadWordCount(n) => MnemonicError::WordCount(n),
                bip39::Error::UnknownWord(i) => MnemonicError::UnknownWord {
                    position: i + 1,
                    word: normalized.split(' ').nth(i).unwrap_or_default().to_string(),
                },
                bip39::Error::InvalidChecksum => MnemonicError::Checksum,
                other => MnemonicError::Other(other.to_string()),
            })
    }

    pub fn word_count(&self) -> usize {
        self.0.word_count()
    }

    /// The words separated by single spaces. Handle with care: this is the secret.
    pub fn phrase(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.words().collect::<Vec<_>>().join(" "))
    }

    pub fn entropy(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.to_entropy())
    }

    /// The 64-byte BIP39 seed for an optional passphrase ("" for none).
    pub fn to_seed(&self, passphrase: &str) -> Zeroizing<[u8; 64]> {
        Zeroizing::new(self.0.to_seed(passphrase))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The English vectors of BIP39's reference implementation (trezor/python-mnemonic
    /// vectors.json), all with passphrase "TREZOR": (entropy, mnemonic, seed).
    const TREZOR_VECTORS: &[(&str, &str, &str)] = &[
        ("00000000000000000000000000000000",
         "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
         "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04"),
        ("7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f",
         "legal winner thank year wave sausage worth useful legal winner thank yellow",
         "2e8905819b8723fe2c1d161860e5ee1830318dbf49a83bd451cfb8440c28bd6fa457fe1296106559a3c80937a1c1069be3a3a5bd381ee6260e8d9739fce1f607"),
        ("80808080808080808080808080808080",
         "letter advice cage absurd amount doctor acoustic avoid letter advice cage above",
         "d71de856f81a8acc65e6fc851a38d4d7ec216fd0796d0a6827a3ad6ed5511a30fa280f12eb2e47ed2ac03b5c462a0358d18d69fe4f985ec81778c1b370b652a8"),
        ("ffffffffffffffffffffffffffffffff",
         "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong",
         "ac27495480225222079d7be181583751e86f571027b0497b5b5d11218e0a8a13332572917f0f8e5a589620c6f15b11c61dee327651a14c34e18231052e48c069"),
        ("000000000000000000000000000000000000000000000000",
         "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon agent",
         "035895f2f481b1b0f01fcf8c289c794660b289981a78f8106447707fdd9666ca06da5a9a565181599b79f53b844d8a71dd9f439c52a3d7b3e8a79c906ac845fa"),
        ("7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f",
         "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal will",
         "f2b94508732bcbacbcc020faefecfc89feafa6649a5491b8c952cede496c214a0c7b3c392d168748f2d4a612bada0753b52a1c7ac53c1e93abd5c6320b9e95dd"),
        ("808080808080808080808080808080808080808080808080",
         "letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic avoid letter always",
         "107d7c02a5aa6f38c58083ff74f04c607c2d2c0ecc55501dadd72d025b751bc27fe913ffb796f841c49b1d33b610cf0e91d3aa239027f5e99fe4ce9e5088cd65"),
        ("ffffffffffffffffffffffffffffffffffffffffffffffff",
         "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo when",
         "0cd6e5d827bb62eb8fc1e262254223817fd068a74b5b449cc2f667c3f1f985a76379b43348d952e2265b4cd129090758b3e3c2c49103b5051aac2eaeb890a528"),
        ("0000000000000000000000000000000000000000000000000000000000000000",
         "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art",
         "bda85446c68413707090a52022edd26a1c9462295029f2e60cd7c4f2bbd3097170af7a4d73245cafa9c3cca8d561a7c3de6f5d4a10be8ed2a5e608d68f92fcc8"),
        ("7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f",
         "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title",
         "bc09fca1804f7e69da93c2f2028eb238c227f2e9dda30cd63699232578480a4021b146ad717fbb7e451ce9eb835f43620bf5c514db0f8add49f5d121449d3e87"),
        ("8080808080808080808080808080808080808080808080808080808080808080",
         "letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic avoid letter advice cage absurd amount doctor acoustic bless",
         "c0c519bd0e91a2ed54357d9d1ebef6f5af218a153624cf4f2da911a0ed8f7a09e2ef61af0aca007096df430022f7a2b6fb91661a9589097069720d015e4e982f"),
        ("ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
         "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo vote",
         "dd48c104698c30cfe2b6142103248622fb7bb0ff692eebb00089b32d22484e1613912f0a5b694407be899ffd31ed3992c456cdf60f5d4564b8ba3f05a69890ad"),
        ("9e885d952ad362caeb4efe34a8e91bd2",
         "ozone drill grab fiber curtain grace pudding thank cruise elder eight picnic",
         "274ddc525802f7c828d8ef7ddbcdc5304e87ac3535913611fbbfa986d0c9e5476c91689f9c8a54fd55bd38606aa6a8595ad213d4c9c9f9aca3fb217069a41028"),
        ("6610b25967cdcca9d59875f5cb50b0ea75433311869e930b",
         "gravity machine north sort system female filter attitude volume fold club stay feature office ecology stable narrow fog",
         "628c3827a8823298ee685db84f55caa34b5cc195a778e52d45f59bcf75aba68e4d7590e101dc414bc1bbd5737666fbbef35d1f1903953b66624f910feef245ac"),
        ("68a79eaca2324873eacc50cb9c6eca8cc68ea5d936f98787c60c7ebc74e6ce7c",
         "hamster diagram private dutch cause delay private meat slide toddler razor book happy fancy gospel tennis maple dilemma loan word shrug inflict delay length",
         "64c87cde7e12ecf6704ab95bb1408bef047c22db4cc7491c4271d170a1b213d20b385bc1588d9c7b38f1b39d415665b8a9030c9ec653d75e65f847d8fc1fc440"),
        ("c0ba5a8e914111210f2bd131f3d5e08d",
         "scheme spot photo card baby mountain device kick cradle pact join borrow",
         "ea725895aaae8d4c1cf682c1bfd2d358d52ed9f0f0591131b559e2724bb234fca05aa9c02c57407e04ee9dc3b454aa63fbff483a8b11de949624b9f1831a9612"),
        ("6d9be1ee6ebd27a258115aad99b7317b9c8d28b6d76431c3",
         "horn tenant knee talent sponsor spell gate clip pulse soap slush warm silver nephew swap uncle crack brave",
         "fd579828af3da1d32544ce4db5c73d53fc8acc4ddb1e3b251a31179cdb71e853c56d2fcb11aed39898ce6c34b10b5382772db8796e52837b54468aeb312cfc3d"),
        ("9f6a2878b2520799a44ef18bc7df394e7061a224d2c33cd015b157d746869863",
         "panda eyebrow bullet gorilla call smoke muffin taste mesh discover soft ostrich alcohol speed nation flash devote level hobby quick inner drive ghost inside",
         "72be8e052fc4919d2adf28d5306b5474b0069df35b02303de8c1729c9538dbb6fc2d731d5f832193cd9fb6aeecbc469594a70e3dd50811b5067f3b88b28c3e8d"),
        ("23db8160a31d3e0dca3688ed941adbf3",
         "cat swing flag economy stadium alone churn speed unique patch report train",
         "deb5f45449e615feff5640f2e49f933ff51895de3b4381832b3139941c57b59205a42480c52175b6efcffaa58a2503887c1e8b363a707256bdd2b587b46541f5"),
        ("8197a4a47f0425faeaa69deebc05ca29c0a5b5cc76ceacc0",
         "light rule cinnamon wrap drastic word pride squirrel upgrade then income fatal apart sustain crack supply proud access",
         "4cbdff1ca2db800fd61cae72a57475fdc6bab03e441fd63f96dabd1f183ef5b782925f00105f318309a7e9c3ea6967c7801e46c8a58082674c860a37b93eda02"),
        ("066dca1a2bb7e8a1db2832148ce9933eea0f3ac9548d793112d9a95c9407efad",
         "all hour make first leader extend hole alien behind guard gospel lava path output census museum junior mass reopen famous sing advance salt reform",
         "26e975ec644423f4a4c4f4215ef09b4bd7ef924e85d1d17c4cf3f136c2863cf6df0a475045652c57eb5fb41513ca2a2d67722b77e954b4b3fc11f7590449191d"),
        ("f30f8c1da665478f49b001d94c5fc452",
         "vessel ladder alter error federal sibling chat ability sun glass valve picture",
         "2aaa9242daafcee6aa9d7269f17d4efe271e1b9a529178d7dc139cd18747090bf9d60295d0ce74309a78852a9caadf0af48aae1c6253839624076224374bc63f"),
        ("c10ec20dc3cd9f652c7fac2f1230f7a3c828389a14392f05",
         "scissors invite lock maple supreme raw rapid void congress muscle digital elegant little brisk hair mango congress clump",
         "7b4a10be9d98e6cba265566db7f136718e1398c71cb581e1b2f464cac1ceedf4f3e274dc270003c670ad8d02c4558b2f8e39edea2775c9e232c7cb798b069e88"),
        ("f585c11aec520db57dd353c69554b21a89b20fb0650966fa0a9d6f74fd989d8f",
         "void come effort suffer camp survey warrior heavy shoot primary clutch crush open amazing screen patrol group space point ten exist slush involve unfold",
         "01f5bced59dec48e362f2c45b5de68b9fd6c92c6634f44d6d40aab69056506f0e35524a518034ddc1192e1dacd32c1ed3eaa3c3b131c88ed8e7e54c49a5d0998"),
    ];

    #[test]
    fn trezor_vectors_entropy_words_and_seed() {
        assert_eq!(TREZOR_VECTORS.len(), 24);
        for (entropy, words, seed) in TREZOR_VECTORS {
            let entropy = hex::decode(entropy).unwrap();
            let from_entropy = Mnemonic::from_entropy(&entropy).unwrap();
            assert_eq!(from_entropy.phrase().as_str(), *words);
            let parsed = Mnemonic::parse(words).unwrap();
            assert_eq!(parsed.entropy().as_slice(), entropy.as_slice());
            assert_eq!(
                hex::encode(parsed.to_seed("TREZOR").as_slice()),
                *seed,
                "{words}"
            );
        }
    }

    #[test]
    fn empty_passphrase_seed_vector() {
        let m = Mnemonic::parse(TREZOR_VECTORS[0].1).unwrap();
        assert_eq!(
            hex::encode(m.to_seed("").as_slice()),
            "5eb00bbddcf069084889a8ab9155568165f5c453ccb85e70811aaed6f6da5fc19a5ac40b389cd370d086206dec8aa6c43daea6690f20ad3d8d48b2d2ce9e38e4"
        );
    }

    #[test]
    fn case_and_whitespace_are_forgiven() {
        let m = Mnemonic::parse(
            "  Legal winner\tTHANK year wave sausage worth useful legal winner thank yellow\n",
        )
        .unwrap();
        assert_eq!(m.phrase().as_str(), TREZOR_VECTORS[1].1);
    }

    #[test]
    fn unknown_word_is_named() {
        let err = Mnemonic::parse(
            "legal winner thank year wave sausage worht useful legal winner thank yellow",
        )
        .unwrap_err();
        assert_eq!(
            err,
            MnemonicError::UnknownWord {
                position: 7,
                word: "worht".into()
            }
        );
        assert!(err.to_string().contains("`worht`"));
    }

    #[test]
    fn bad_checksum_and_word_count_are_errors() {
        // Last word changed from "about" to "abandon": every word known, checksum wrong.
        let phrase = ["abandon"; 12].join(" ");
        assert_eq!(
            Mnemonic::parse(&phrase).unwrap_err(),
            MnemonicError::Checksum
        );
        assert_eq!(
            Mnemonic::parse("abandon about").unwrap_err(),
            MnemonicError::WordCount(2)
        );
    }

    #[test]
    fn generate_gives_valid_distinct_mnemonics() {
        for words in [12, 24] {
            let a = Mnemonic::generate(words).unwrap();
            let b = Mnemonic::generate(words).unwrap();
            assert_eq!(a.word_count(), words);
            assert_ne!(a.phrase(), b.phrase());
            let again = Mnemonic::parse(&a.phrase()).unwrap();
            assert_eq!(again.entropy(), a.entropy());
        }
        assert_eq!(
            Mnemonic::generate(15).unwrap_err(),
            MnemonicError::UnsupportedLength(15)
        );
    }

    #[test]
    fn debug_does_not_leak_words() {
        let m = Mnemonic::parse(TREZOR_VECTORS[0].1).unwrap();
        assert!(!format!("{m:?}").contains("abandon"));
    }
}
