use serde::{Deserialize, Serialize};

/// Platform roles. A user holds one or more; API clients hold scopes instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 平台管理員: the big-data bureau's platform operators; manage every department.
    PlatformAdmin,
    /// 部門管理員: manages users, API clients and data of one department.
    DeptAdmin,
    /// 值班員: watches the overview and works incidents for one department.
    Operator,
    /// 網格員: acts on incidents in assigned grids.
    GridWorker,
    /// 市民
    Resident,
    /// 企業
    Enterprise,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::PlatformAdmin,
        Role::DeptAdmin,
        Role::Operator,
        Role::GridWorker,
        Role::Resident,
        Role::Enterprise,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform_admin",
            Role::DeptAdmin => "dept_admin",
            Role::Operator => "operator",
            Role::GridWorker => "grid_worker",
            Role::Resident => "resident",
            Role::Enterprise => "enterprise",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}
