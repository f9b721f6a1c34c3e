//! What a statement is made of, the same on every backend: SQL text with `$n` placeholders,
//! [`Arg`] parameters, and rows decoded into tuples ([`Record`]). The one place where SQL text
//! is rewritten for a backend ([`sqlite_text`]) and parameters are bound ([`bind_args!`]).

use sqlx::Row as _;
use std::borrow::Cow;

/// A statement parameter, for the pool, the fast writes and the direct reads alike.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    /// A nullable float: goes with `CAST($n AS DOUBLE PRECISION)` in the SQL (see
    /// [`crate::nullable_real`]).
    Real(Option<f64>),
    /// A float bound as a float, for comparisons with float columns (no cast needed).
    Number(f64),
}

impl<'a> Arg<'a> {
    pub fn text(text: impl Into<Cow<'a, str>>) -> Self {
        Arg::Text(text.into())
    }

    /// The same parameter, owning its text (to move it to another thread).
    pub fn into_owned(self) -> Arg<'static> {
        match self {
            Arg::Text(text) => Arg::Text(Cow::Owned(text.into_owned())),
            Arg::Int(value) => Arg::Int(value),
            Arg::Real(value) => Arg::Real(value),
            Arg::Number(value) => Arg::Number(value),
        }
    }
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Text(text) => text.as_ref().to_sql(),
            Arg::Int(value) => value.to_sql(),
            Arg::Real(value) => value.to_sql(),
            Arg::Number(value) => value.to_sql(),
        }
    }
}

/// The SQL text for SQLite's own connections: `$n` becomes `?n` (sqlx takes `$n` on both).
pub(crate) fn sqlite_text(sql: &str) -> String {
    sql.replace('$', "?")
}

/// Binds [`Arg`]s to a sqlx query of any kind (they share no trait with `bind`).
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                $crate::Arg::Text(text) => query.bind(text.as_ref()),
                $crate::Arg::Int(value) => query.bind(*value),
                $crate::Arg::Real(value) => query.bind($crate::nullable_real(*value)),
                $crate::Arg::Number(value) => query.bind(*value),
            };
        }
        query
    }};
}
pub(crate) use bind_args;

/// A column value that both backends decode.
pub trait Column: Sized {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Self>;
    fn from_any(row: &sqlx::any::AnyRow, index: usize) -> Result<Self, sqlx::Error>;
}

impl<T> Column for T
where
    T: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Self> {
        row.get(index)
    }

    fn from_any(row: &sqlx::any::AnyRow, index: usize) -> Result<Self, sqlx::Error> {
        row.try_get(index)
    }
}

/// A selected row as a tuple of [`Column`]s, decoded the same from either backend.
pub trait Record: Sized + Send {
    fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
    fn from_any(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error>;
}

macro_rules! tuple_record {
    ($($name:ident $index:tt),+) => {
        impl<$($name: Column + Send),+> Record for ($($name,)+) {
            fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok(($($name::from_sqlite(row, $index)?,)+))
            }
            fn from_any(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
                Ok(($($name::from_any(row, $index)?,)+))
            }
        }
    };
}

tuple_record!(A 0);
tuple_record!(A 0, B 1);
tuple_record!(A 0, B 1, C 2);
tuple_record!(A 0, B 1, C 2, D 3);
tuple_record!(A 0, B 1, C 2, D 3, E 4);
tuple_record!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_record!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_record!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
tuple_record!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
tuple_record!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
tuple_record!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
tuple_record!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);
tuple_record!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12);
tuple_record!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13);

/// What differs between the backends' SQL, asked by what it is for instead of by backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect(pub(crate) crate::Backend);

/// Which JSON functions the SQL may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonSql {
    /// `CAST(x AS JSONB)`, `->`, `->>`, `jsonb_typeof` (PostgreSQL).
    Jsonb,
    /// `json_extract`, `json_type` with `$."name"` paths (SQLite's JSON1).
    Json1,
}

impl Dialect {
    /// ` FOR UPDATE` where writers run side by side, so that a read before a write holds its
    /// row until the transaction ends; empty where one writer at a time already does.
    pub fn for_update(self) -> &'static str {
        if self.concurrent_writers() {
            " FOR UPDATE"
        } else {
            ""
        }
    }

    /// Whether several transactions write at once (PostgreSQL), so row or advisory locks are
    /// needed to make writers take turns; SQLite has one writer.
    pub fn concurrent_writers(self) -> bool {
        self.0 == crate::Backend::Postgres
    }

    /// Whether the database runs inside this process and reads from its file (SQLite): a
    /// cache of decoded rows then pays, and nothing else can change them behind our back.
    pub fn embedded(self) -> bool {
        self.0 == crate::Backend::Sqlite
    }

    /// Whether a spatial index is an R*Tree table kept beside its rows by the writer (SQLite)
    /// instead of an index the database keeps on the columns (PostgreSQL).
    pub fn spatial_index_by_hand(self) -> bool {
        self.0 == crate::Backend::Sqlite
    }

    /// The aggregate that joins the texts of `expr` with commas.
    pub fn comma_list(self, expr: &str) -> String {
        match self.0 {
            crate::Backend::Sqlite => format!("group_concat({expr}, ',')"),
            crate::Backend::Postgres => format!("string_agg({expr}, ',')"),
        }
    }

    /// The JSON text `b`'s members merged over `a`'s (both JSON object texts).
    pub fn json_merge(self, a: &str, b: &str) -> String {
        match self.0 {
            crate::Backend::Sqlite => format!("json_patch({a}, {b})"),
            crate::Backend::Postgres => {
                format!("(CAST({a} AS JSONB) || CAST({b} AS JSONB))::text")
            }
        }
    }

    pub fn json(self) -> JsonSql {
        match self.0 {
            crate::Backend::Sqlite => JsonSql::Json1,
            crate::Backend::Postgres => JsonSql::Jsonb,
        }
    }

    /// `sqlite` or `postgres`, for status pages and logs.
    pub fn name(self) -> &'static str {
        self.0.name()
    }
}
