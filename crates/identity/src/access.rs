//! Who may do what: one table of role × resource × action, read by the handlers through
//! [`Principal::reach`](crate::Principal::reach), [`Principal::may`](crate::Principal::may) and
//! [`Principal::require`](crate::Principal::require).
//!
//! A user's reach is the widest any of their roles gives; an API client's is its department for
//! exactly the `resource:action` scopes it holds (`devices:read` reads device records, not
//! telemetry; `telemetry:write` writes readings and reads nothing). Residents and enterprises
//! belong to a department for bookkeeping only: they are not its staff and read none of its
//! data. A department's staff reach another department's devices only through a grant, which
//! the handlers check beyond this table.

use crate::Role;

/// What a request acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// Device records and the device list.
    Devices,
    /// Readings of devices: latest values, series, aggregates, exports, ingestion.
    Telemetry,
    /// Department-defined device profiles (the built-in ones are a public catalogue).
    Profiles,
    AlarmRules,
    Alarms,
    /// Cross-department sharing of devices.
    Grants,
    /// A department's NGSI-LD entities, subscriptions and registrations (open data is public).
    Context,
    /// E-licences a department issues (holders read their own through their binding).
    Licences,
    /// Applications for services a department accepts or has a step of (applicants read
    /// their own).
    Applications,
    /// Policies a department pays (免申即享): runs, the grants ledger, appeals, and the
    /// catalogue entries of the services it owns.
    Policies,
    /// Verifying codes (一码通城) at a department's scenarios, and their scan log and figures.
    CodeScans,
    /// The code scheme itself: signing keys, the trust list of other issuers, revocations of
    /// holders. Only platform admins (the big-data bureau) reach it.
    CodeScheme,
    /// A department's datasets in the data hub's catalogue (core ones are listed only to it).
    Datasets,
    /// A department's requests for other departments' data and its decisions on requests for
    /// its own (the grants of the data hub), and its scenario apps' marketplace subscriptions.
    DataSharing,
}

impl Resource {
    pub const ALL: [Resource; 14] = [
        Resource::Devices,
        Resource::Telemetry,
        Resource::Profiles,
        Resource::AlarmRules,
        Resource::Alarms,
        Resource::Grants,
        Resource::Context,
        Resource::Licences,
        Resource::Applications,
        Resource::Policies,
        Resource::CodeScans,
        Resource::CodeScheme,
        Resource::Datasets,
        Resource::DataSharing,
    ];

    /// The scope prefix that names it (`devices` in `devices:read`).
    pub fn scope_name(self) -> &'static str {
        match self {
            Resource::Devices => "devices",
            Resource::Telemetry => "telemetry",
            Resource::Profiles => "profiles",
            Resource::AlarmRules => "alarm-rules",
            Resource::Alarms => "alarms",
            Resource::Grants => "grants",
            Resource::Context => "context",
            Resource::Licences => "licences",
            Resource::Applications => "applications",
            Resource::Policies => "policies",
            Resource::CodeScans => "code-scans",
            Resource::CodeScheme => "code-scheme",
            Resource::Datasets => "datasets",
            Resource::DataSharing => "data-sharing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Read,
    Write,
}

impl Action {
    pub fn scope_name(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
        }
    }
}

/// How far a grant reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    None,
    /// The caller's own department (and what grants share with it).
    Own,
    All,
}

use Action::{Read, Write};
use Reach::{All, None, Own};
use Resource::{
    AlarmRules, Alarms, Applications, CodeScans, Context, DataSharing, Datasets, Devices, Grants,
    Licences, Policies, Profiles, Telemetry,
};

/// The table. Platform admins reach everything and are not listed; a pair not listed for a
/// role is [`Reach::None`].
pub const TABLE: &[(Role, Resource, Action, Reach)] = &[
    (Role::DeptAdmin, Devices, Read, Own),
    (Role::DeptAdmin, Devices, Write, Own),
    (Role::DeptAdmin, Telemetry, Read, Own),
    (Role::DeptAdmin, Telemetry, Write, Own),
    (Role::DeptAdmin, Profiles, Read, Own),
    (Role::DeptAdmin, Profiles, Write, Own),
    (Role::DeptAdmin, AlarmRules, Read, Own),
    (Role::DeptAdmin, AlarmRules, Write, Own),
    (Role::DeptAdmin, Alarms, Read, Own),
    (Role::DeptAdmin, Alarms, Write, Own),
    (Role::DeptAdmin, Grants, Read, Own),
    (Role::DeptAdmin, Grants, Write, Own),
    (Role::DeptAdmin, Context, Read, Own),
    (Role::DeptAdmin, Context, Write, Own),
    (Role::DeptAdmin, Licences, Read, Own),
    (Role::DeptAdmin, Licences, Write, Own),
    (Role::DeptAdmin, Applications, Read, Own),
    (Role::DeptAdmin, Applications, Write, Own),
    (Role::DeptAdmin, Policies, Read, Own),
    (Role::DeptAdmin, Policies, Write, Own),
    (Role::DeptAdmin, CodeScans, Read, Own),
    (Role::DeptAdmin, CodeScans, Write, Own),
    (Role::DeptAdmin, Datasets, Read, Own),
    (Role::DeptAdmin, Datasets, Write, Own),
    (Role::DeptAdmin, DataSharing, Read, Own),
    (Role::DeptAdmin, DataSharing, Write, Own),
    (Role::Operator, Devices, Read, Own),
    (Role::Operator, Devices, Write, Own),
    (Role::Operator, Telemetry, Read, Own),
    (Role::Operator, Telemetry, Write, Own),
    (Role::Operator, Profiles, Read, Own),
    (Role::Operator, AlarmRules, Read, Own),
    (Role::Operator, AlarmRules, Write, Own),
    (Role::Operator, Alarms, Read, Own),
    (Role::Operator, Alarms, Write, Own),
    (Role::Operator, Grants, Read, Own),
    (Role::Operator, Context, Read, Own),
    (Role::Operator, Context, Write, Own),
    (Role::Operator, Licences, Read, Own),
    (Role::Operator, Licences, Write, Own),
    (Role::Operator, Applications, Read, Own),
    (Role::Operator, Applications, Write, Own),
    (Role::Operator, Policies, Read, Own),
    (Role::Operator, CodeScans, Read, Own),
    (Role::Operator, CodeScans, Write, Own),
    (Role::Operator, Datasets, Read, Own),
    (Role::Operator, DataSharing, Read, Own),
    (Role::GridWorker, Devices, Read, Own),
    (Role::GridWorker, Telemetry, Read, Own),
    (Role::GridWorker, Alarms, Read, Own),
    (Role::GridWorker, Context, Read, Own),
];

/// What `role` reaches of `resource` for `action`.
pub fn reach(role: Role, resource: Resource, action: Action) -> Reach {
    if role == Role::PlatformAdmin {
        return All;
    }
    TABLE
        .iter()
        .find(|(r, res, act, _)| *r == role && *res == resource && *act == action)
        .map_or(None, |(_, _, _, reach)| *reach)
}

/// The scope that grants an API client `action` on `resource` in its department.
pub fn scope(resource: Resource, action: Action) -> String {
    format!("{}:{}", resource.scope_name(), action.scope_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residents_and_enterprises_reach_no_department_data() {
        for role in [Role::Resident, Role::Enterprise] {
            for resource in Resource::ALL {
                for action in [Read, Write] {
                    assert_eq!(reach(role, resource, action), None, "{role:?} {resource:?}");
                }
            }
        }
    }

    #[test]
    fn the_table_names_each_pair_once_and_never_all() {
        for (i, (role, resource, action, reach)) in TABLE.iter().enumerate() {
            assert_ne!(*reach, All, "only platform admins reach all");
            assert_ne!(*role, Role::PlatformAdmin, "platform admins are not listed");
            assert!(
                !TABLE[i + 1..]
                    .iter()
                    .any(|(r, res, act, _)| r == role && res == resource && act == action),
                "{role:?} {resource:?} {action:?} twice"
            );
        }
    }

    #[test]
    fn scopes_are_named_resource_colon_action() {
        assert_eq!(scope(Devices, Read), "devices:read");
        assert_eq!(scope(AlarmRules, Write), "alarm-rules:write");
    }
}
