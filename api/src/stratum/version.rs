//! BIP 310 version rolling and the other `mining.configure` extensions.
//!
//! `mining.configure [["version-rolling", ...], {"version-rolling.mask": "1fffe000",
//! "version-rolling.min-bit-count": 2}]` → `{"version-rolling": true,
//! "version-rolling.mask": <miner's mask ∩ 0x1fffe000>}`. A share's sixth parameter then
//! carries the rolled bits, and the header's version is
//! `(job_version & !mask) | (version_bits & mask)` — BIP 310's formula, so bits outside
//! the mask are ignored whichever convention (only the rolled bits, or the whole
//! version) the firmware follows. Bits 13–28 are the space BIP 320 leaves to miners; the
//! engine has no rule on the header version, so a rolled header is a valid block.
//!
//! Also answered: `minimum-difficulty` (a floor for vardiff) and `subscribe-extranonce`
//! (same as `mining.extranonce.subscribe`); anything else is `false`.

use serde_json::{json, Map, Value};

/// The bits a miner may roll (BIP 320).
pub const SERVER_MASK: u32 = 0x1fff_e000;

/// What a `mining.configure` asked for and was granted.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Configured {
    /// The negotiated version-rolling mask, if version rolling was asked for.
    pub version_mask: Option<u32>,
    /// The miner's `minimum-difficulty.value`.
    pub minimum_difficulty: Option<f64>,
    pub subscribe_extranonce: bool,
}

/// Answers `mining.configure`'s params: the result object and what was agreed.
pub fn configure(params: &[Value]) -> Result<(Value, Configured), String> {
    let names = params
        .first()
        .and_then(Value::as_array)
        .ok_or("the first parameter must be a list of extension names")?;
    let empty = Map::new();
    let opts = params.get(1).and_then(Value::as_object).unwrap_or(&empty);
    let mut result = Map::new();
    let mut agreed = Configured::default();
    for name in names {
        let Some(name) = name.as_str() else {
            return Err("extension names must be strings".into());
        };
        match name {
            "version-rolling" => {
                let asked = match opts.get("version-rolling.mask") {
                    None => u32::MAX,
                    Some(v) => v
                        .as_str()
                        .and_then(|s| u32::from_str_radix(s, 16).ok())
                        .ok_or("version-rolling.mask must be hex")?,
                };
                let mask = asked & SERVER_MASK;
                result.insert(name.into(), json!(true));
                result.insert("version-rolling.mask".into(), json!(format!("{mask:08x}")));
                agreed.version_mask = Some(mask);
            }
            "minimum-difficulty" => {
                let v = opts
                    .get("minimum-difficulty.value")
                    .and_then(Value::as_f64)
                    .filter(|d| d.is_finite() && *d >= 0.0);
                result.insert(name.into(), json!(v.is_some()));
                agreed.minimum_difficulty = v;
            }
            "subscribe-extranonce" => {
                result.insert(name.into(), json!(true));
                agreed.subscribe_extranonce = true;
            }
            other => {
                result.insert(other.into(), json!(false));
            }
        }
    }
    Ok((Value::Object(result), agreed))
}

/// The header version of a share: the job's version with the masked bits replaced.
pub fn rolled(job_version: u32, mask: u32, version_bits: u32) -> u32 {
    (job_version & !mask) | (version_bits & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_is_the_intersection_with_bip320_bits() {
        let (r, c) = configure(&[
            json!(["version-rolling"]),
            json!({"version-rolling.mask": "ffffffff", "version-rolling.min-bit-count": 2}),
        ])
        .unwrap();
        assert_eq!(
            r,
            json!({"version-rolling": true, "version-rolling.mask": "1fffe000"})
        );
        assert_eq!(c.version_mask, Some(0x1fffe000));
        let (r, _) = configure(&[
            json!(["version-rolling", "info"]),
            json!({"version-rolling.mask": "00ffff00"}),
        ])
        .unwrap();
        assert_eq!(r["version-rolling.mask"], "00ffe000");
        assert_eq!(r["info"], false);
        assert!(configure(&[json!("version-rolling")]).is_err());
    }

    #[test]
    fn rolling_replaces_only_masked_bits() {
        assert_eq!(rolled(0x2000_0000, 0x1fff_e000, 0x0000_6000), 0x2000_6000);
        // The whole-version convention gives the same header.
        assert_eq!(rolled(0x2000_0000, 0x1fff_e000, 0x2000_6000), 0x2000_6000);
        assert_eq!(rolled(1, 0x1fff_e000, 0xffff_ffff), 0x1fff_e001);
        assert_eq!(rolled(1, 0, 0xffff_ffff), 1);
    }
}
