//! Operator limits on connections: a cap on all of them and one per client IP (IPv6 by
//! /64, like the HTTP rate limit, since one host usually holds a whole /64). A refused
//! connection gets one Stratum error line and is closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many connections to this server ({0}); try again later")]
    Full(usize),
    #[error("too many connections from this address ({0})")]
    PerIp(usize),
}

pub struct Limits {
    max_connections: usize,
    max_per_ip: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// The key a client's connections are counted under.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl Limits {
    /// `0` means no limit.
    pub fn new(max_connections: usize, max_per_ip: usize) -> Limits {
        let none = |n: usize| if n == 0 { usize::MAX } else { n };
        Limits {
            max_connections: none(max_connections),
            max_per_ip: none(max_per_ip),
            open: Mutex::new((0, HashMap::new())),
        }
    }

    /// Admits a connection from `ip`, counted until the permit drops.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let key = client_key(ip);
        let mut g = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 >= self.max_connections {
            return Err(Refusal::Full(self.max_connections));
        }
        let n = g.1.entry(key).or_default();
        if *n >= self.max_per_ip {
            return Err(Refusal::PerIp(self.max_per_ip));
        }
        *n += 1;
        g.0 += 1;
        Ok(Permit {
            limits: self.clone(),
            key,
        })
    }
}

pub struct Permit {
    limits: Arc<Limits>,
    key: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut g = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = g.0.saturating_sub(1);
        if let Some(n) = g.1.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                g.1.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_enforced_and_released() {
        let l = Arc::new(Limits::new(3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = l.admit(a).unwrap();
        let _p2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).err(), Some(Refusal::PerIp(2)));
        let _p3 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).err(), Some(Refusal::Full(3)));
        drop(p1);
        assert!(l.admit(a).is_ok());
        // One /64 is one client.
        let l = Arc::new(Limits::new(0, 1));
        let _x = l.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert!(l.admit("2001:db8::2".parse().unwrap()).is_err());
        assert!(l.admit("2001:db8:0:1::2".parse().unwrap()).is_ok());
    }
}
