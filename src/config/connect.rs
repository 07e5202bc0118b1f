//! `[zookeeper] connect`: `host[:port],...[/chroot]`, parsed once into its servers and its chroot.
//!
//! The client library takes the string whole ([`Connect::as_str`]); the daemon needs its chroot
//! (a child's `ZK_SUPERVISE_ZNODE` is a full path, `status` and the session check that it exists).
//! Both come from here, so nothing parses the string a second time.

use std::fmt;

/// A checked connect string: its servers and its chroot, and the text as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    text: String,
    hosts: Vec<String>,
    chroot: Option<String>,
}

impl Connect {
    /// Checks `text` the way the client library reads it.
    ///
    /// # Errors
    ///
    /// A message (without the key's name) for a URL, an empty or malformed host, a bad port, or a
    /// chroot that is not a ZooKeeper path.
    pub fn parse(text: &str) -> Result<Connect, String> {
        // `zk://host:2181`, `tcp://...`: a URL is not the client library's connect string.
        if let Some((scheme, rest)) = text.split_once("://") {
            if !scheme.is_empty() && !scheme.contains([',', '/']) {
                return Err(format!(
                    "{text:?} is a URL, not host:port; write it without the scheme: {rest:?} \
                     (the form is host:port,host:port[/chroot])"
                ));
            }
        }
        let (hosts, chroot) = match text.find('/') {
            Some(i) => (&text[..i], Some(&text[i..])),
            None => (text, None),
        };
        // A bare "/" is the root: no chroot at all.
        let chroot = chroot.filter(|c| *c != "/");
        if let Some(chroot) = chroot {
            check_zk_path(chroot).map_err(|why| format!("chroot {chroot:?}: {why}"))?;
        }
        for server in hosts.split(',') {
            check_server(text, server)?;
        }
        Ok(Connect {
            text: text.to_owned(),
            hosts: hosts.split(',').map(str::to_owned).collect(),
            chroot: chroot.map(str::to_owned),
        })
    }

    /// The string as written, as the client library takes it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The servers, `host[:port]` each, in the order written.
    #[must_use]
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The chroot, like `/apps`: every path of a session is under it. `None` without one (or with
    /// a bare `/`).
    #[must_use]
    pub fn chroot(&self) -> Option<&str> {
        self.chroot.as_deref()
    }
}

impl fmt::Display for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One `host[:port]` of `connect`, an IPv6 address in brackets.
fn check_server(connect: &str, server: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = server.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{server:?}: missing \"]\" after an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{server:?}: expected \":port\" after \"]\""))?,
            ),
        };
        (host, port)
    } else {
        match server.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (server, None),
        }
    };
    if server.is_empty() || host.is_empty() {
        return Err(format!(
            "empty host in {connect:?}; expected host:port,host:port[/chroot]"
        ));
    }
    let host_ok = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%'));
    if !host_ok {
        return Err(format!("bad host {host:?}"));
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("bad port {port:?} for {host}")),
        }
    }
    Ok(())
}

/// An absolute ZooKeeper path, checked the way the client library checks paths.
pub(super) fn check_zk_path(path: &str) -> Result<(), String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("must start with \"/\"".to_owned());
    };
    if rest.is_empty() || rest.ends_with('/') {
        return Err("must not end with \"/\"".to_owned());
    }
    for part in rest.split('/') {
        if part.is_empty() {
            return Err("must not contain \"//\"".to_owned());
        }
        if part == "." || part == ".." {
            return Err("must not contain \".\" or \"..\" components".to_owned());
        }
    }
    let unsupported = |c: char| {
        let u = u32::from(c);
        [0x0..=0x1f, 0x7f..=0x9f, 0xd800..=0xf8ff, 0xfff0..=0xffff]
            .iter()
            .any(|r| r.contains(&u))
    };
    if let Some(c) = path.chars().find(|c| unsupported(*c)) {
        return Err(format!("ZooKeeper does not allow {c:?} in a path"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_chroot_are_parsed_once() {
        let c = Connect::parse("zk1:2181,[::1]:2182,zk3/apps/x").unwrap();
        assert_eq!(c.as_str(), "zk1:2181,[::1]:2182,zk3/apps/x");
        assert_eq!(c.to_string(), c.as_str());
        assert_eq!(c.hosts(), ["zk1:2181", "[::1]:2182", "zk3"]);
        assert_eq!(c.chroot(), Some("/apps/x"));
        assert_eq!(Connect::parse("zk1:2181").unwrap().chroot(), None);
        // A bare "/" is no chroot.
        let root = Connect::parse("zk1:2181,zk2:2181/").unwrap();
        assert_eq!(root.chroot(), None);
        assert_eq!(root.hosts(), ["zk1:2181", "zk2:2181"]);
    }
}
