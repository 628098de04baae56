//! The ONE place that decides who may see or do what. Every page, API
//! route and websocket asks [`Subject::may`] (or filters with
//! [`Subject::sees_group`]); nothing else compares admin flags or group
//! ids. The rules:
//!
//! - An admin may do everything.
//! - A user sees and uses only the servers (and hosts, and groups) of the
//!   groups they belong to. Anything else is hidden: answered as if it did
//!   not exist, so ids cannot be probed.
//! - A user never changes the estate, never manages users, never sees the
//!   admin pages. What they can see but not change is forbidden, not
//!   hidden.
//! - Nobody reads a server credential through the web: there is no act
//!   for it.

use std::collections::HashSet;

use crate::inventory::Principal;

/// Who is asking. Built per request from the stored user, so a change of
/// groups or admin flag applies to the very next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub id: i64,
    pub name: String,
    pub admin: bool,
    groups: HashSet<i64>,
}

/// What someone wants to do, with what the decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// See a server of this group in lists and its detail.
    SeeServer { group: i64 },
    /// Act on a server of this group through the controller: SSH probe,
    /// (later) shell, upload, download.
    UseServer { group: i64 },
    /// Create, edit or delete a server of this group.
    EditServer { group: i64 },
    /// See a group (its name and identifier).
    SeeGroup { group: i64 },
    /// Edit or delete a group, or its members.
    EditGroup { group: i64 },
    /// Create groups, rooms and servers; edit rooms.
    EditEstate,
    /// See rooms (names and purposes only).
    SeeRooms,
    /// List, create, change users and API tokens.
    ManageUsers,
    /// See enrolled agents, metric store status, the overview of every
    /// host and the alert settings.
    SeeOperations,
    /// Change alert rules and recipients, send a test mail.
    EditAlerts,
    /// See, create, edit and delete load-test plans and uploaded JMeter
    /// zips (every signed-in user: load tests are team work; the audit
    /// log says who changed what).
    UseLoadTests,
    /// See a monitored host's metrics; `group` of the server it runs on,
    /// if linked (an unlinked host belongs to no group: admins only).
    SeeHost { group: Option<i64> },
}

/// Why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The subject must not learn the thing exists (answer 404).
    Hidden,
    /// The subject may know it exists but not do this (answer 403).
    Forbidden,
}

impl Subject {
    pub fn new(p: Principal) -> Subject {
        Subject {
            id: p.id,
            name: p.name,
            admin: p.admin,
            groups: p.groups.into_iter().collect(),
        }
    }

    pub fn may(&self, act: Act) -> Result<(), Denied> {
        if self.admin {
            return Ok(());
        }
        let member = |g: i64| self.groups.contains(&g);
        match act {
            Act::SeeServer { group } | Act::UseServer { group } | Act::SeeGroup { group } => {
                if member(group) {
                    Ok(())
                } else {
                    Err(Denied::Hidden)
                }
            }
            Act::EditServer { group } | Act::EditGroup { group } => {
                if member(group) {
                    Err(Denied::Forbidden)
                } else {
                    Err(Denied::Hidden)
                }
            }
            Act::SeeHost { group: Some(g) } if member(g) => Ok(()),
            Act::SeeHost { .. } => Err(Denied::Hidden),
            Act::SeeRooms | Act::UseLoadTests => Ok(()),
            Act::EditEstate | Act::ManageUsers | Act::SeeOperations | Act::EditAlerts => {
                Err(Denied::Forbidden)
            }
        }
    }

    /// For filtering lists: may this subject see things of `group`?
    pub fn sees_group(&self, group: i64) -> bool {
        self.may(Act::SeeGroup { group }).is_ok()
    }

    /// The groups whose servers this subject sees; `None` for all.
    pub fn visible_groups(&self) -> Option<Vec<i64>> {
        if self.admin {
            None
        } else {
            let mut v: Vec<i64> = self.groups.iter().copied().collect();
            v.sort_unstable();
            Some(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(admin: bool, groups: &[i64]) -> Subject {
        Subject::new(Principal {
            id: 1,
            name: "u".into(),
            admin,
            disabled: false,
            groups: groups.to_vec(),
        })
    }

    #[test]
    fn users_see_only_their_groups_and_change_nothing() {
        let u = subject(false, &[1]);
        assert_eq!(u.may(Act::SeeServer { group: 1 }), Ok(()));
        assert_eq!(u.may(Act::UseServer { group: 1 }), Ok(()));
        assert_eq!(u.may(Act::SeeServer { group: 2 }), Err(Denied::Hidden));
        assert_eq!(u.may(Act::UseServer { group: 2 }), Err(Denied::Hidden));
        assert_eq!(u.may(Act::EditServer { group: 1 }), Err(Denied::Forbidden));
        assert_eq!(u.may(Act::EditServer { group: 2 }), Err(Denied::Hidden));
        assert_eq!(u.may(Act::EditGroup { group: 2 }), Err(Denied::Hidden));
        assert_eq!(u.may(Act::EditEstate), Err(Denied::Forbidden));
        assert_eq!(u.may(Act::ManageUsers), Err(Denied::Forbidden));
        assert_eq!(u.may(Act::SeeOperations), Err(Denied::Forbidden));
        assert_eq!(u.may(Act::EditAlerts), Err(Denied::Forbidden));
        assert_eq!(u.may(Act::SeeRooms), Ok(()));
        assert_eq!(u.may(Act::SeeHost { group: Some(1) }), Ok(()));
        assert_eq!(u.may(Act::SeeHost { group: None }), Err(Denied::Hidden));
        assert_eq!(u.visible_groups(), Some(vec![1]));
    }

    #[test]
    fn admins_may_everything() {
        let a = subject(true, &[]);
        for act in [
            Act::SeeServer { group: 9 },
            Act::EditServer { group: 9 },
            Act::EditGroup { group: 9 },
            Act::EditEstate,
            Act::ManageUsers,
            Act::SeeOperations,
            Act::EditAlerts,
            Act::SeeHost { group: None },
        ] {
            assert_eq!(a.may(act), Ok(()), "{act:?}");
        }
        assert_eq!(a.visible_groups(), None);
    }
}
