//! Stratum V1 wire pieces: JSON-RPC message shapes, the standard error codes, the byte
//! orders of the hex fields, and difficulty ↔ target arithmetic (see the module docs of
//! [`crate::stratum`] for the byte-order conventions).

use engine::Hash256;
use serde_json::{json, Value};

/// Stratum's standard error codes (the ones every pool and miner agrees on).
pub const ERR_OTHER: i64 = 20;
pub const ERR_JOB_NOT_FOUND: i64 = 21;
pub const ERR_DUPLICATE: i64 = 22;
pub const ERR_LOW_DIFFICULTY: i64 = 23;
pub const ERR_UNAUTHORIZED: i64 = 24;
pub const ERR_NOT_SUBSCRIBED: i64 = 25;

/// Bitcoin's difficulty-1 target, 0xffff · 2^208, as a float.
pub fn diff1() -> f64 {
    engine::pow::DIFF1
}

/// Expected hashes per share at difficulty `d`: 2^256 / target = d · 2^256 / diff1
/// (≈ d · 2^32).
pub fn hashes_per_share(d: f64) -> f64 {
    d * 2f64.powi(256) / diff1()
}

/// A hash's difficulty: diff1 over the hash read as a little-endian 256-bit number.
pub fn hash_difficulty(hash: &Hash256) -> f64 {
    engine::pow::hash_difficulty(&hash.0)
}

/// Whether a hash meets share difficulty `d`. Float rounding on both sides: a hash
/// within a millionth of the target counts (miners compute the target in floats too).
pub fn meets_difficulty(hash: &Hash256, d: f64) -> bool {
    hash_difficulty(hash) >= d * (1.0 - 1e-6)
}

/// The previous-block hash as Stratum sends it: internal byte order with each 4-byte word
/// reversed.
pub fn stratum_prevhash(hash: &Hash256) -> String {
    let mut b = hash.0;
    for word in b.chunks_exact_mut(4) {
        word.reverse();
    }
    hex::encode(b)
}

/// Parses 8 hex digits as a big-endian u32 (Stratum's `ntime`, `nonce`, version bits).
pub fn parse_u32_hex(v: Option<&Value>, what: &str) -> Result<u32, String> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what} must be a hex string"))?;
    // Checked digit by digit: `u32::from_str_radix` also takes a leading `+`, so
    // `+0000001` would pass as 8 characters and the same nonce have two spellings.
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{what} must be 8 hex digits"));
    }
    u32::from_str_radix(s, 16).map_err(|_| format!("{what} must be 8 hex digits"))
}

/// A difficulty as it goes on the wire: four significant digits, so retargets send
/// short numbers (`0.001234`, not `0.0012340712883`) and miners that print it stay
/// readable. Never rounds to zero.
pub fn wire_difficulty(d: f64) -> f64 {
    if !d.is_finite() || d <= 0.0 {
        return d;
    }
    let scale = 10f64.powi(3 - d.log10().floor() as i32);
    let r = (d * scale).round() / scale;
    if r > 0.0 {
        r
    } else {
        d
    }
}

pub fn error_value(code: i64, message: &str) -> Value {
    json!([code, message, null])
}

pub fn response(id: &Value, result: Value) -> Value {
    json!({"id": id, "result": result, "error": null})
}

pub fn error_response(id: &Value, code: i64, message: &str) -> Value {
    json!({"id": id, "result": null, "error": error_value(code, message)})
}

pub fn notification(method: &str, params: Value) -> Value {
    json!({"id": null, "method": method, "params": params})
}

/// One parsed request line.
pub struct Request {
    pub id: Value,
    pub method: String,
    pub params: Vec<Value>,
}

/// Parses a request line; the error is the response to send (the connection stays open).
pub fn parse_request(bytes: &[u8]) -> Result<Request, Value> {
    let req: Value = serde_json::from_slice(bytes)
        .map_err(|e| error_response(&Value::Null, ERR_OTHER, &format!("parse error: {e}")))?;
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = req.get("method").and_then(Value::as_str) else {
        return Err(error_response(&id, ERR_OTHER, "missing method"));
    };
    let params = match req.get("params") {
        Some(Value::Array(p)) => p.clone(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(error_response(&id, ERR_OTHER, "params must be an array")),
    };
    Ok(Request {
        method: method.to_string(),
        id,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::pow::CompactTarget;

    #[test]
    fn a_signed_nonce_is_refused() {
        let v = |s: &str| Value::String(s.into());
        assert_eq!(parse_u32_hex(Some(&v("0000002a")), "nonce"), Ok(42));
        assert_eq!(parse_u32_hex(Some(&v("FFFFFFFF")), "nonce"), Ok(u32::MAX));
        for bad in [
            "+0000001",
            "-0000001",
            " 0000001",
            "0x000001",
            "0000001",
            "000000001",
        ] {
            assert!(parse_u32_hex(Some(&v(bad)), "nonce").is_err(), "{bad}");
        }
        assert!(parse_u32_hex(Some(&Value::from(42)), "nonce").is_err());
    }

    #[test]
    fn prevhash_swaps_each_word_and_difficulty_matches_bitcoin() {
        // Bitcoin block 1's previous hash (the genesis), as pools send it.
        let genesis: Hash256 = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
            .parse()
            .unwrap();
        // Internal order 6fe28c0a b6f1b372 ..., each word reversed; the display hash's
        // leading zeros end up last, as in pools' notify messages.
        assert_eq!(
            stratum_prevhash(&genesis),
            "0a8ce26f72b3f1b646a2a6c14ff763ae65831e939c085ae10019d66800000000"
        );
        let one = CompactTarget(0x1d00ffff).to_target().unwrap();
        let mut at_target = [0u8; 32];
        at_target.copy_from_slice(&one.to_be_bytes());
        at_target.reverse();
        let d = hash_difficulty(&Hash256(at_target));
        assert!((d - 1.0).abs() < 1e-12, "{d}");
        assert!(meets_difficulty(&Hash256(at_target), 1.0));
        assert!(!meets_difficulty(&Hash256(at_target), 1.01));
        // A difficulty-1 share is 2^32 hashes and a bit (0xffff, not 0x10000).
        let h = hashes_per_share(1.0);
        assert!((h / 2f64.powi(32) - 1.0).abs() < 1e-4, "{h}");
    }

    #[test]
    fn wire_difficulty_keeps_four_significant_digits() {
        assert_eq!(wire_difficulty(0.0012340712883), 0.001234);
        assert_eq!(wire_difficulty(123456.7), 123500.0);
        assert_eq!(wire_difficulty(1.0), 1.0);
        let tiny = 4.656542373906925e-10;
        assert_eq!(wire_difficulty(tiny), 4.657e-10);
    }
}
