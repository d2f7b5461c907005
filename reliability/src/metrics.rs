//! Reading the node's Prometheus text (`GET /metrics`).

/// The value of the series `name` (without labels) in `text`; panics naming it when the
/// node does not export it.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}
