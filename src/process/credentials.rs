//! Users and groups: the identity a child runs with when its worker sets `user` or `group`, and
//! whether this daemon may switch to it at all.

use std::ffi::CString;

use nix::errno::Errno;
use nix::unistd::{Gid, Group, Uid, User};

/// The identity a child runs with when its worker sets `user` or `group`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub uid: Uid,
    pub gid: Gid,
    pub groups: Vec<Gid>,
    /// `HOME`, `USER` and `LOGNAME` for the child, when it runs as a `user`.
    pub home: Option<(std::path::PathBuf, String)>,
}

/// Why `user` or `group` cannot be resolved.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CredentialsError {
    #[error("unknown user \"{0}\"")]
    UnknownUser(String),
    #[error("unknown group \"{0}\"")]
    UnknownGroup(String),
    /// The name service failed (LDAP or SSSD unreachable, say), not "no such user".
    #[error("user \"{0}\": {1}")]
    UserLookup(String, Errno),
    #[error("group \"{0}\": {1}")]
    GroupLookup(String, Errno),
    #[error("user name has a NUL byte")]
    NulInUserName,
}

/// A numeric `user` or `group` (`"1000"`): an id, taken as is even when no passwd or group entry has
/// it (as `chown 1000` and systemd's `User=` take it).
fn numeric_id(name: &str) -> Option<u32> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // (uid_t)-1 means "unchanged" to the kernel: never an id.
    name.parse().ok().filter(|&id| id != u32::MAX)
}

/// Resolves `user` and `group` (NSS lookups: files, but also LDAP or SSSD, which can block for
/// seconds while the network is down; that is why [`super::exec::spawn`] checks the lease again afterwards).
///
/// A numeric `user` without a passwd entry runs with its number as the group too (unless `group`
/// says otherwise; never root's group by default), `HOME=/`, and `USER` and `LOGNAME` set to the
/// number.
pub(crate) fn credentials(
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Option<Credentials>, CredentialsError> {
    let user = match user {
        None => None,
        Some(name) => match numeric_id(name) {
            Some(id) => match User::from_uid(Uid::from_raw(id)) {
                Ok(Some(u)) => Some(u),
                Ok(None) => {
                    let uid = Uid::from_raw(id);
                    let gid = match group {
                        Some(g) => resolve_group(g)?,
                        None => Gid::from_raw(id),
                    };
                    return Ok(Some(Credentials {
                        uid,
                        gid,
                        groups: vec![gid],
                        home: Some(("/".into(), name.to_owned())),
                    }));
                }
                Err(e) => return Err(CredentialsError::UserLookup(name.to_owned(), e)),
            },
            None => match User::from_name(name) {
                Ok(Some(u)) => Some(u),
                Ok(None) => return Err(CredentialsError::UnknownUser(name.to_owned())),
                Err(e) => return Err(CredentialsError::UserLookup(name.to_owned(), e)),
            },
        },
    };
    let group = group.map(resolve_group).transpose()?;
    Ok(match (user, group) {
        (None, None) => None,
        (None, Some(gid)) => Some(Credentials {
            uid: Uid::current(),
            gid,
            groups: vec![gid],
            home: None,
        }),
        (Some(u), group) => {
            let gid = group.unwrap_or(u.gid);
            let cname =
                CString::new(u.name.clone()).map_err(|_| CredentialsError::NulInUserName)?;
            let mut groups = nix::unistd::getgrouplist(&cname, gid).unwrap_or_else(|_| vec![gid]);
            if !groups.contains(&gid) {
                groups.insert(0, gid);
            }
            Some(Credentials {
                uid: u.uid,
                gid,
                groups,
                home: Some((u.dir, u.name)),
            })
        }
    })
}

/// A `group` by name, or by number even without a group entry.
fn resolve_group(name: &str) -> Result<Gid, CredentialsError> {
    if let Some(id) = numeric_id(name) {
        return Ok(Gid::from_raw(id));
    }
    match Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(CredentialsError::UnknownGroup(name.to_owned())),
        Err(e) => Err(CredentialsError::GroupLookup(name.to_owned(), e)),
    }
}

/// The process's own ids, as [`needs_root`] compares them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ids {
    pub root: bool,
    pub uids: [Uid; 2],
    pub gids: [Gid; 2],
}

impl Ids {
    pub(crate) fn current() -> Ids {
        Ids {
            root: Uid::effective().is_root(),
            uids: [Uid::current(), Uid::effective()],
            gids: [Gid::current(), Gid::effective()],
        }
    }
}

/// Why `creds` cannot be taken by a process with `ids`: a process that is not root may keep its own
/// user and group (`setuid` and `setgid` to its real or effective id), nothing else. The message
/// names the user and group as the worker wrote them.
pub(crate) fn needs_root(
    creds: &Credentials,
    ids: Ids,
    user: Option<&str>,
    group: Option<&str>,
) -> Option<String> {
    if ids.root || (ids.uids.contains(&creds.uid) && ids.gids.contains(&creds.gid)) {
        return None;
    }
    let target = match (user, group) {
        (Some(u), Some(g)) => format!("user \"{u}\" and group \"{g}\""),
        (Some(u), None) => format!("user \"{u}\""),
        (None, Some(g)) => format!("group \"{g}\""),
        (None, None) => "another user".to_owned(),
    };
    Some(format!(
        "switching to {target} (uid {}, gid {}) needs root, and the daemon runs as uid {}, gid {}; \
         run it as root or remove user and group from the worker",
        creds.uid, creds.gid, ids.uids[1], ids.gids[1]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12, 7: a numeric `user` or `group` is an id, even without a passwd or group entry; a
    /// user that has one is found by its number too.
    #[test]
    fn numeric_ids_need_no_entry() {
        let free = (60_000..65_000)
            .find(|&id| {
                User::from_uid(Uid::from_raw(id)).ok().flatten().is_none()
                    && Group::from_gid(Gid::from_raw(id)).ok().flatten().is_none()
            })
            .expect("an id with no entry");
        let id = free.to_string();
        let creds = credentials(Some(&id), None).expect("taken").expect("some");
        assert_eq!((creds.uid.as_raw(), creds.gid.as_raw()), (free, free));
        assert_eq!(creds.groups, [Gid::from_raw(free)]);
        assert_eq!(creds.home, Some(("/".into(), id.clone())));
        let creds = credentials(Some(&id), Some("0"))
            .expect("taken")
            .expect("some");
        assert_eq!(creds.gid, Gid::from_raw(0));
        let creds = credentials(None, Some(&id)).expect("taken").expect("some");
        assert_eq!(creds.gid, Gid::from_raw(free));
        let root = credentials(Some("0"), None).expect("taken").expect("some");
        assert_eq!(
            root.home.as_ref().map(|(_, name)| name.as_str()),
            Some("root")
        );
        let unknown = credentials(Some("zk-supervise-no-such-user"), None).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "unknown user \"zk-supervise-no-such-user\""
        );
    }

    /// Issue 12, 7: a daemon that is not root cannot switch users; the spawn error says so rather
    /// than `Operation not permitted`. Its own user and group need nothing.
    #[test]
    fn switching_users_needs_root() {
        let creds = credentials(Some("0"), None).expect("taken").expect("some");
        let daemon = Ids {
            root: false,
            uids: [Uid::from_raw(1000); 2],
            gids: [Gid::from_raw(1000); 2],
        };
        assert_eq!(
            needs_root(&creds, daemon, Some("root"), None).as_deref(),
            Some(
                "switching to user \"root\" (uid 0, gid 0) needs root, and the daemon runs as uid \
                 1000, gid 1000; run it as root or remove user and group from the worker"
            )
        );
        let own = credentials(Some("1000"), Some("1000"))
            .expect("taken")
            .expect("some");
        assert_eq!(needs_root(&own, daemon, Some("1000"), Some("1000")), None);
        let other_group = credentials(Some("1000"), Some("0"))
            .expect("taken")
            .expect("some");
        assert!(needs_root(&other_group, daemon, Some("1000"), Some("0"))
            .is_some_and(|m| m.starts_with("switching to user \"1000\" and group \"0\"")));
        let as_root = Ids {
            root: true,
            ..daemon
        };
        assert_eq!(needs_root(&creds, as_root, Some("root"), None), None);
    }
}
