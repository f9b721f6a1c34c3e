//! Temporal representation (CIM 009 §4.4, §5.7.3–5.7.4): every attribute value an entity has
//! had, by time (`observedAt`, else when it was written), queried with `timerel`, `lastN`, and
//! aggregated per period (`aggrMethods`, `aggrPeriodDuration`) in the database: periods of
//! whole hours starting on an hour read the hourly rollups kept beside the history, others the
//! history itself.
//!
//! An attribute's *open hour* is the hour of its newest instance. Its rollup is not kept while
//! it lasts (a change costs the writer one page fewer): the instance that begins a later hour
//! sums it up, and aggregations read it from the history. Every other hour's rollup is exact.

use crate::errors;
use crate::model::Entity;
use serde_json::{Map, Value};
use yunnao_core::Problem;
use yunnao_store::{Arg, DbResultExt, Write, sqlx};

/// The Scope's IRI: its values are kept in the history like an attribute's, and shown in the
/// temporal representation as a Property (clause 4.5.6).
pub const SCOPE: &str = "https://uri.etsi.org/ngsi-ld/scope";

/// The history rows of the attributes that `after` holds differently from `before`
/// (attributes, and Scope), all of them for a new entity. A new Scope is an instance observed
/// when the entity was modified.
pub async fn record(
    tx: &mut Write,
    tenant: &str,
    before: Option<(&Map<String, Value>, Option<&Value>)>,
    after: &Entity,
) -> Result<(), Problem> {
    record_attrs(tx, tenant, &after.id, before.map(|b| b.0), &after.attrs).await?;
    let scope_before = before.and_then(|b| b.1);
    if let Some(scope) = &after.scope
        && Some(scope) != scope_before
    {
        let at = &after.modified_at;
        let instance = serde_json::json!({"type": "Property", "value": scope,
            "observedAt": at, "createdAt": at, "modifiedAt": at});
        let mut scope_history = Map::new();
        scope_history.insert(SCOPE.to_owned(), instance);
        record_attrs(tx, tenant, &after.id, None, &scope_history).await?;
    }
    Ok(())
}

/// [`record`] for entity `id`'s attributes `after` (each one instance or an array of them).
/// Writers of one attribute's history must take turns (each reads its open hour first).
pub async fn record_attrs(
    tx: &mut Write,
    tenant: &str,
    id: &str,
    before: Option<&Map<String, Value>>,
    after: &Map<String, Value>,
) -> Result<(), Problem> {
    for (name, attribute) in after {
        let unchanged = before
            .and_then(|b| b.get(name))
            .is_some_and(|old| same_content(old, attribute));
        if unchanged {
            continue;
        }
        let instances: Vec<&Value> = match attribute {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for instance in instances {
            let at = observed_ms(instance).unwrap_or_else(yunnao_core::time::now_ms);
            let dataset = dataset_of(instance);
            let number = instance.get("value").and_then(Value::as_f64);
            let text =
                serde_json::to_string(instance).map_err(|e| Problem::internal(e.to_string()))?;
            let open_hour = tx
                .query_i64(
                    NEWEST_INSTANCE,
                    &[Arg::text(tenant), Arg::text(id), Arg::text(name)],
                )
                .await?
                .map(hour_of);
            let history = [
                Arg::text(tenant),
                Arg::text(id),
                Arg::text(name),
                Arg::text(dataset),
                Arg::Int(at),
                Arg::Real(number),
                Arg::text(&text),
            ];
            let inserted = tx.execute(INSERT_HISTORY, &history).await? > 0;
            if !inserted {
                // The same instant again: the value is replaced.
                tx.execute(REPLACE_HISTORY, &history).await?;
            }
            let hour = hour_of(at);
            match open_hour {
                // A later hour begins: the attribute's open hour is over and summed up.
                Some(open) if hour > open => resum_hours(tx, tenant, id, name, Some(open)).await?,
                // A closed hour gets an instance: a new one is folded in; a replaced one
                // means summing it afresh (a minimum or maximum cannot be taken back).
                Some(open) if hour < open && inserted => {
                    tx.execute(
                        FOLD_INTO_HOUR,
                        &[
                            Arg::text(tenant),
                            Arg::text(id),
                            Arg::text(name),
                            Arg::Int(hour),
                            Arg::Real(number),
                        ],
                    )
                    .await?;
                }
                Some(open) if hour < open => resum_hours(tx, tenant, id, name, Some(hour)).await?,
                // The open hour (or the first instance): summed when it is over.
                _ => {}
            }
        }
    }
    Ok(())
}

/// When an attribute instance was observed (else written), if it says.
pub fn observed_ms(instance: &Value) -> Option<i64> {
    TimeProperty::ObservedAt.time_of(instance)
}

/// An attribute instance's dataset (`@none` for the default instance).
pub fn dataset_of(instance: &Value) -> &str {
    instance
        .get("datasetId")
        .and_then(Value::as_str)
        .unwrap_or("@none")
}

const HOUR_MS: i64 = 3_600_000;

/// The hour that holds `at_ms`, as the ms of its start.
fn hour_of(at_ms: i64) -> i64 {
    at_ms - at_ms.rem_euclid(HOUR_MS)
}

/// The time of an attribute's newest instance: its hour is the attribute's open hour, whose
/// rollup is not kept up to date (see [`aggregate`]).
const NEWEST_INSTANCE: &str =
    "SELECT MAX(at_ms) FROM ngsi_history WHERE tenant = $1 AND entity_id = $2 AND attr = $3";

/// A new instance of an attribute.
const INSERT_HISTORY: &str = "INSERT INTO ngsi_history (tenant, entity_id, attr, dataset_id, at_ms, number, instance) \
                 VALUES ($1, $2, $3, $4, $5, CAST($6 AS DOUBLE PRECISION), $7) \
                 ON CONFLICT (tenant, entity_id, attr, at_ms, dataset_id) DO NOTHING";

/// Folds a new instance into its hour's rollup.
const FOLD_INTO_HOUR: &str = "INSERT INTO ngsi_history_hourly (tenant, entity_id, attr, hour_ms, n, total, low, high) \
                     VALUES ($1, $2, $3, $4, 1, CAST($5 AS DOUBLE PRECISION), CAST($5 AS DOUBLE PRECISION), CAST($5 AS DOUBLE PRECISION)) \
                     ON CONFLICT (tenant, entity_id, attr, hour_ms) DO UPDATE SET \
                     n = ngsi_history_hourly.n + 1, \
                     total = CASE WHEN excluded.total IS NULL THEN ngsi_history_hourly.total \
                                  WHEN ngsi_history_hourly.total IS NULL THEN excluded.total \
                                  ELSE ngsi_history_hourly.total + excluded.total END, \
                     low = CASE WHEN excluded.low IS NULL THEN ngsi_history_hourly.low \
                                WHEN ngsi_history_hourly.low IS NULL OR excluded.low < ngsi_history_hourly.low THEN excluded.low \
                                ELSE ngsi_history_hourly.low END, \
                     high = CASE WHEN excluded.high IS NULL THEN ngsi_history_hourly.high \
                                 WHEN ngsi_history_hourly.high IS NULL OR excluded.high > ngsi_history_hourly.high THEN excluded.high \
                                 ELSE ngsi_history_hourly.high END";

/// The same instant again: the value is replaced (same arguments as [`INSERT_HISTORY`]).
const REPLACE_HISTORY: &str = "UPDATE ngsi_history SET number = CAST($6 AS DOUBLE PRECISION), instance = $7 \
                     WHERE tenant = $1 AND entity_id = $2 AND attr = $3 AND dataset_id = $4 AND at_ms = $5";

/// Equal apart from the system timestamps.
pub fn same_content(a: &Value, b: &Value) -> bool {
    // Compared in place (this runs for every attribute of every update): what is left of
    // each object without its timestamps is the same, member by member.
    fn kept(object: &Map<String, Value>) -> impl Iterator<Item = (&String, &Value)> {
        object
            .iter()
            .filter(|(k, _)| *k != "createdAt" && *k != "modifiedAt")
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            kept(x).count() == kept(y).count()
                && kept(x).all(|(k, v)| y.get(k).is_some_and(|w| same_content(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_content(v, w))
        }
        _ => a == b,
    }
}

/// `timerel` with its instants, in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeRange {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// Which time of an instance `timerel` and `lastN` go by (`timeproperty`, clause 5.7.3):
/// when it was observed (else written), created, modified, or deleted. Deleted instances
/// are kept apart and shown only for `deletedAt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeProperty {
    #[default]
    ObservedAt,
    CreatedAt,
    ModifiedAt,
    DeletedAt,
}

impl TimeProperty {
    pub fn parse(text: Option<&str>) -> Result<Self, Problem> {
        Ok(match text {
            None | Some("observedAt") => Self::ObservedAt,
            Some("createdAt") => Self::CreatedAt,
            Some("modifiedAt") => Self::ModifiedAt,
            Some("deletedAt") => Self::DeletedAt,
            Some(other) => {
                return Err(errors::bad_request(format!(
                    "timeproperty {other:?} is not observedAt, createdAt, modifiedAt or deletedAt"
                )));
            }
        })
    }

    /// The member of an instance that holds this time.
    pub fn member(self) -> &'static str {
        match self {
            Self::ObservedAt => "observedAt",
            Self::CreatedAt => "createdAt",
            Self::ModifiedAt => "modifiedAt",
            Self::DeletedAt => "deletedAt",
        }
    }

    /// An instance's member holding this time (observedAt falls back on when it was
    /// written).
    pub fn stamp(self, instance: &Value) -> Option<&Value> {
        match self {
            Self::ObservedAt => instance
                .get("observedAt")
                .or_else(|| instance.get("modifiedAt")),
            other => instance.get(other.member()),
        }
    }

    /// An instance's time by this property, in ms.
    pub fn time_of(self, instance: &Value) -> Option<i64> {
        self.stamp(instance)
            .and_then(Value::as_str)
            .and_then(yunnao_core::time::parse_rfc3339_ms)
    }
}

impl TimeRange {
    pub fn parse(
        timerel: Option<&str>,
        time_at: Option<&str>,
        end_time_at: Option<&str>,
    ) -> Result<Self, Problem> {
        let instant = |name: &str, text: Option<&str>| -> Result<i64, Problem> {
            let text = text.ok_or_else(|| errors::bad_request(format!("timerel needs {name}")))?;
            yunnao_core::time::parse_rfc3339_ms(text)
                .ok_or_else(|| errors::bad_request(format!("{name} {text:?} is not a date-time")))
        };
        Ok(match timerel {
            None => Self {
                from: None,
                to: None,
            },
            Some("before") => Self {
                from: None,
                to: Some(instant("timeAt", time_at)?),
            },
            Some("after") => Self {
                from: Some(instant("timeAt", time_at)?),
                to: None,
            },
            Some("between") => {
                let (from, to) = (
                    instant("timeAt", time_at)?,
                    instant("endTimeAt", end_time_at)?,
                );
                if to <= from {
                    return Err(errors::bad_request("endTimeAt must be after timeAt"));
                }
                Self {
                    from: Some(from),
                    to: Some(to),
                }
            }
            Some(other) => {
                return Err(errors::bad_request(format!(
                    "timerel {other:?} is not before, after or between"
                )));
            }
        })
    }
}

/// An ISO 8601 duration of days, hours, minutes, seconds (and weeks), in ms; `P0D` is 0 (one
/// period over the whole range).
pub fn duration_ms(text: &str) -> Result<i64, Problem> {
    let bad = || {
        errors::bad_request(format!(
            "{text:?} is not a duration such as PT1H, P1D or PT5M"
        ))
    };
    let rest = text.strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = rest.split_once('T').unwrap_or((rest, ""));
    let mut total: i64 = 0;
    let mut parse = |part: &str, units: &[(char, i64)]| -> Result<(), Problem> {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let (_, ms) = units.iter().find(|(u, _)| *u == c).ok_or_else(bad)?;
            let n: i64 = number.parse().map_err(|_| bad())?;
            total = total
                .checked_add(n.checked_mul(*ms).ok_or_else(bad)?)
                .ok_or_else(bad)?;
            number.clear();
        }
        if number.is_empty() {
            Ok(())
        } else {
            Err(bad())
        }
    };
    parse(date, &[('W', 7 * 86_400_000), ('D', 86_400_000)])?;
    parse(time, &[('H', 3_600_000), ('M', 60_000), ('S', 1000)])?;
    if rest.is_empty() || (date.is_empty() && time.is_empty()) {
        return Err(bad());
    }
    Ok(total)
}

pub const AGGREGATIONS: &[&str] = &["totalCount", "distinctCount", "sum", "avg", "min", "max"];

/// The attributes entity `id` has history of (of deletions, for `deletedAt`): one index probe
/// per attribute (the next name after the last), not a scan of every instance (a year of
/// 5-minute values is 105,120 rows).
pub async fn attribute_names(
    db: &yunnao_store::Db,
    tenant: &str,
    entity: &str,
    property: TimeProperty,
) -> Result<Vec<String>, Problem> {
    let (table, _) = history_columns(property);
    let sql =
        format!("SELECT MIN(attr) FROM {table} WHERE tenant = $1 AND entity_id = $2 AND attr > $3");
    let mut names: Vec<String> = Vec::new();
    loop {
        let next: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .bind(tenant.to_owned())
            .bind(entity.to_owned())
            .bind(names.last().cloned().unwrap_or_default())
            .fetch_one(db.pool())
            .await
            .db()?;
        match next {
            Some(name) => names.push(name),
            None => return Ok(names),
        }
    }
}

/// Where the instances of a time property are, and the column of their time: deletions are
/// kept apart from the values.
fn history_columns(property: TimeProperty) -> (&'static str, &'static str) {
    if property == TimeProperty::DeletedAt {
        ("ngsi_history_deletions", "deleted_ms")
    } else {
        ("ngsi_history", "at_ms")
    }
}

/// The instances of one attribute of one entity in `range` by `property`, oldest first; with
/// `last_n` only the newest N (still oldest first).
pub async fn instances(
    db: &yunnao_store::Db,
    tenant: &str,
    entity: &str,
    attr: &str,
    (range, property): (TimeRange, TimeProperty),
    last_n: Option<i64>,
) -> Result<Vec<Value>, Problem> {
    let order = if last_n.is_some() { "DESC" } else { "ASC" };
    // The history is keyed by observation time (and deletions by deletion time): other
    // properties are read whole and filtered here.
    let keyed = matches!(property, TimeProperty::ObservedAt | TimeProperty::DeletedAt);
    let limit = match last_n {
        Some(n) if keyed => format!(" LIMIT {n}"),
        _ => String::new(),
    };
    let (from, to) = if keyed {
        (range.from.unwrap_or(i64::MIN), range.to.unwrap_or(i64::MAX))
    } else {
        (i64::MIN, i64::MAX)
    };
    let (table, time) = history_columns(property);
    let sql = format!(
        "SELECT instance, {time}, dataset_id FROM {table} WHERE tenant = $1 AND entity_id = $2 AND attr = $3 \
         AND {time} >= $4 AND {time} < $5 ORDER BY {time} {order}{limit}"
    );
    let mut rows: Vec<(String, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(entity)
        .bind(attr)
        .bind(from)
        .bind(to)
        .fetch_all(db.pool())
        .await
        .db()?;
    if last_n.is_some() {
        rows.reverse();
    }
    let mut instances = rows
        .iter()
        .map(|(text, at_ms, dataset)| {
            let mut instance: Value =
                serde_json::from_str(text).map_err(|e| Problem::internal(e.to_string()))?;
            if let Value::Object(members) = &mut instance {
                // A deletion's id never names a value instance (those can be changed).
                let id = if property == TimeProperty::DeletedAt {
                    instance_id(*at_ms, dataset).replacen(
                        INSTANCE_PREFIX,
                        &format!("{INSTANCE_PREFIX}deleted:"),
                        1,
                    )
                } else {
                    instance_id(*at_ms, dataset)
                };
                members.insert("instanceId".into(), id.into());
            }
            Ok(instance)
        })
        .collect::<Result<Vec<Value>, Problem>>()?;
    if !keyed {
        let inside =
            |at: i64| range.from.is_none_or(|f| at >= f) && range.to.is_none_or(|t| at < t);
        let mut timed: Vec<(i64, Value)> = instances
            .into_iter()
            .filter_map(|i| {
                property
                    .time_of(&i)
                    .filter(|at| inside(*at))
                    .map(|at| (at, i))
            })
            .collect();
        timed.sort_by_key(|(at, _)| *at);
        if let Some(n) = last_n {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            timed.drain(..timed.len().saturating_sub(n));
        }
        instances = timed.into_iter().map(|(_, i)| i).collect();
    }
    Ok(instances)
}

/// Records that instances were deleted (clause 4.5.7 and 5.7.3, `timeproperty=deletedAt`):
/// per removed attribute (as it was: one instance or an array; a Scope as its value), one
/// instance per dataset with the NGSI-LD Null as its value, deleted at `deleted_at`.
pub async fn record_deletions(
    tx: &mut Write,
    tenant: &str,
    id: &str,
    removed: &[(String, Value)],
    deleted_at: &str,
) -> Result<(), Problem> {
    let at_ms =
        yunnao_core::time::parse_rfc3339_ms(deleted_at).unwrap_or_else(yunnao_core::time::now_ms);
    for (name, old) in removed {
        // A Scope is one value (a list of scopes), not instances by dataset.
        let instances: Vec<&Value> = match old {
            Value::Array(items) if name != SCOPE => items.iter().collect(),
            one => vec![one],
        };
        for instance in instances {
            let dataset = dataset_of(instance);
            let deleted = if name == SCOPE {
                serde_json::json!({"type": "Property", "value": [], "deletedAt": deleted_at})
            } else {
                crate::model::deleted_instance(instance, deleted_at)
            };
            let text =
                serde_json::to_string(&deleted).map_err(|e| Problem::internal(e.to_string()))?;
            tx.execute(
                "INSERT INTO ngsi_history_deletions (tenant, entity_id, attr, deleted_ms, dataset_id, instance) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (tenant, entity_id, attr, deleted_ms, dataset_id) DO NOTHING",
                &[
                    Arg::text(tenant),
                    Arg::text(id),
                    Arg::text(name),
                    Arg::Int(at_ms),
                    Arg::text(dataset),
                    Arg::text(&text),
                ],
            )
            .await?;
        }
    }
    Ok(())
}

const INSTANCE_PREFIX: &str = "urn:ngsi-ld:Instance:";

/// An instance's `instanceId`: its time and dataset, which are its key in the history, so it
/// needs no column of its own.
pub fn instance_id(at_ms: i64, dataset: &str) -> String {
    if dataset == "@none" {
        format!("{INSTANCE_PREFIX}{at_ms}")
    } else {
        let encoded: String = form_urlencoded::byte_serialize(dataset.as_bytes()).collect();
        format!("{INSTANCE_PREFIX}{at_ms}:{encoded}")
    }
}

/// The time and dataset an [`instance_id`] names.
pub fn parse_instance_id(id: &str) -> Option<(i64, String)> {
    let rest = id.strip_prefix(INSTANCE_PREFIX)?;
    let (at, dataset) = match rest.split_once(':') {
        Some((at, encoded)) => {
            let decoded = form_urlencoded::parse(format!("d={encoded}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())?;
            (at, decoded)
        }
        None => (rest, "@none".to_owned()),
    };
    Some((at.parse().ok()?, dataset))
}

/// Which history of an entity to delete.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// All of it.
    Entity,
    /// One attribute's: one dataset's, or every dataset's.
    Attribute {
        attr: &'a str,
        dataset: Option<&'a str>,
    },
    /// One instance.
    Instance {
        attr: &'a str,
        dataset: &'a str,
        at_ms: i64,
    },
}

/// Deletes the `scope` of entity `id`'s history; the hourly rollups follow. The number of
/// instances deleted.
pub async fn delete_rows(
    tx: &mut Write,
    tenant: &str,
    id: &str,
    scope: Scope<'_>,
) -> Result<u64, Problem> {
    let (attr, deleted, at_ms) = match scope {
        Scope::Entity => {
            let entity = [Arg::text(tenant), Arg::text(id)];
            let deleted = tx
                .execute(
                    "DELETE FROM ngsi_history WHERE tenant = $1 AND entity_id = $2",
                    &entity,
                )
                .await?;
            tx.execute(
                "DELETE FROM ngsi_history_deletions WHERE tenant = $1 AND entity_id = $2",
                &entity,
            )
            .await?;
            tx.execute(
                "DELETE FROM ngsi_history_hourly WHERE tenant = $1 AND entity_id = $2",
                &entity,
            )
            .await?;
            return Ok(deleted);
        }
        Scope::Attribute { attr, dataset } => {
            let mut sql = String::from(
                "DELETE FROM ngsi_history WHERE tenant = $1 AND entity_id = $2 AND attr = $3",
            );
            let mut args = vec![Arg::text(tenant), Arg::text(id), Arg::text(attr)];
            if let Some(dataset) = dataset {
                sql.push_str(" AND dataset_id = $4");
                args.push(Arg::text(dataset));
            }
            let deleted = tx.execute(&sql, &args).await?;
            tx.execute(
                &sql.replace("ngsi_history", "ngsi_history_deletions"),
                &args,
            )
            .await?;
            (attr, deleted, None)
        }
        Scope::Instance {
            attr,
            dataset,
            at_ms,
        } => {
            let deleted = tx
                .execute(
                    "DELETE FROM ngsi_history WHERE tenant = $1 AND entity_id = $2 AND attr = $3 \
                     AND dataset_id = $4 AND at_ms = $5",
                    &[
                        Arg::text(tenant),
                        Arg::text(id),
                        Arg::text(attr),
                        Arg::text(dataset),
                        Arg::Int(at_ms),
                    ],
                )
                .await?;
            (attr, deleted, Some(at_ms))
        }
    };
    if deleted > 0 {
        resum_hours(tx, tenant, id, attr, at_ms).await?;
    }
    Ok(deleted)
}

/// One stored instance of entity `id`'s history (its JSON), if there is one.
pub async fn stored_instance(
    db: &yunnao_store::Db,
    tenant: &str,
    id: &str,
    attr: &str,
    dataset: &str,
    at_ms: i64,
) -> Result<Option<Value>, Problem> {
    let text: Option<String> = sqlx::query_scalar(
        "SELECT instance FROM ngsi_history WHERE tenant = $1 AND entity_id = $2 AND attr = $3 \
         AND dataset_id = $4 AND at_ms = $5",
    )
    .bind(tenant)
    .bind(id)
    .bind(attr)
    .bind(dataset)
    .bind(at_ms)
    .fetch_optional(db.pool())
    .await
    .db()?;
    text.map(|text| serde_json::from_str(&text).map_err(|e| Problem::internal(e.to_string())))
        .transpose()
}

/// Replaces one stored instance's content (its time and dataset stay); its hour is re-summed.
/// False when there is no such instance.
pub async fn replace_instance(
    tx: &mut Write,
    tenant: &str,
    id: &str,
    (attr, dataset, at_ms): (&str, &str, i64),
    instance: &Value,
) -> Result<bool, Problem> {
    let text = serde_json::to_string(instance).map_err(|e| Problem::internal(e.to_string()))?;
    let number = instance.get("value").and_then(Value::as_f64);
    let replaced = tx
        .execute(
            REPLACE_HISTORY,
            &[
                Arg::text(tenant),
                Arg::text(id),
                Arg::text(attr),
                Arg::text(dataset),
                Arg::Int(at_ms),
                Arg::Real(number),
                Arg::text(&text),
            ],
        )
        .await?;
    if replaced > 0 {
        resum_hours(tx, tenant, id, attr, Some(at_ms)).await?;
    }
    Ok(replaced > 0)
}

/// Sums an attribute's hours afresh from its history: the one holding `at_ms`, or all.
async fn resum_hours(
    tx: &mut Write,
    tenant: &str,
    id: &str,
    attr: &str,
    at_ms: Option<i64>,
) -> Result<(), Problem> {
    let (from, to) = match at_ms {
        Some(at) => (hour_of(at), hour_of(at) + HOUR_MS),
        None => (i64::MIN, i64::MAX),
    };
    let range = [
        Arg::text(tenant),
        Arg::text(id),
        Arg::text(attr),
        Arg::Int(from),
        Arg::Int(to),
    ];
    tx.execute(
        "DELETE FROM ngsi_history_hourly WHERE tenant = $1 AND entity_id = $2 AND attr = $3 \
         AND hour_ms >= $4 AND hour_ms < $5",
        &range,
    )
    .await?;
    tx.execute(
        "INSERT INTO ngsi_history_hourly (tenant, entity_id, attr, hour_ms, n, total, low, high) \
         SELECT tenant, entity_id, attr, at_ms - ((at_ms % 3600000) + 3600000) % 3600000, \
         COUNT(*), SUM(number), MIN(number), MAX(number) FROM ngsi_history \
         WHERE tenant = $1 AND entity_id = $2 AND attr = $3 AND at_ms >= $4 AND at_ms < $5 \
         GROUP BY tenant, entity_id, attr, at_ms - ((at_ms % 3600000) + 3600000) % 3600000",
        &range,
    )
    .await?;
    Ok(())
}

/// (period index, count, distinct count, sum, min, max)
type PeriodRow = (i64, i64, i64, Option<f64>, Option<f64>, Option<f64>);

/// The rows of a per-period `sql` (`$1`–`$3` the attribute, `$4`–`$5` the time range read,
/// `$6` the period, `$7` the start of the first period): in place on a SQLite file, else
/// through the pool.
async fn period_rows(
    db: &yunnao_store::Db,
    sql: &str,
    (tenant, entity, attr): (&str, &str, &str),
    (start, end): (i64, i64),
    (period, origin): (i64, i64),
) -> Result<Vec<PeriodRow>, Problem> {
    if start >= end {
        return Ok(Vec::new());
    }
    db.scan(
        sql,
        &[
            Arg::text(tenant),
            Arg::text(entity),
            Arg::text(attr),
            Arg::Int(start),
            Arg::Int(end),
            Arg::Int(period),
            Arg::Int(origin),
        ],
    )
    .await
}

/// One period's aggregates from two parts of it.
fn combined(a: &PeriodRow, b: &PeriodRow) -> PeriodRow {
    let either = |x: Option<f64>, y: Option<f64>, f: fn(f64, f64) -> f64| match (x, y) {
        (Some(x), Some(y)) => Some(f(x, y)),
        (x, y) => x.or(y),
    };
    (
        a.0,
        a.1 + b.1,
        a.2 + b.2,
        either(a.3, b.3, |x, y| x + y),
        either(a.4, b.4, f64::min),
        either(a.5, b.5, f64::max),
    )
}

/// Per-period aggregates of one numeric attribute: for each method, `[[value, start, end], …]`.
pub async fn aggregate(
    db: &yunnao_store::Db,
    tenant: &str,
    entity: &str,
    attr: &str,
    range: TimeRange,
    period_ms: i64,
    methods: &[String],
) -> Result<Map<String, Value>, Problem> {
    let from = range.from.unwrap_or(0);
    let to = range.to.unwrap_or(i64::MAX);
    // One period over everything when the duration is zero.
    let period = if period_ms > 0 {
        period_ms
    } else {
        i64::MAX / 4
    };
    // distinctCount compares whole values (text too), which costs: only when asked for.
    let distinct = if methods.iter().any(|m| m == "distinctCount") {
        "COUNT(DISTINCT COALESCE(CAST(number AS TEXT), instance))"
    } else {
        "0"
    };
    // Whole hours from an hour's start: the hourly rollups hold the answer, one row per hour.
    let hourly = period_ms > 0
        && period_ms % HOUR_MS == 0
        && from.rem_euclid(HOUR_MS) == 0
        && (to == i64::MAX || to.rem_euclid(HOUR_MS) == 0)
        && !methods.iter().any(|m| m == "distinctCount");
    // Periods are counted from `from` ($7); $4 and $5 bound the rows read.
    const HOURLY_SQL: &str = "SELECT (hour_ms - $7) / $6 AS bucket, CAST(SUM(n) AS BIGINT), CAST(0 AS BIGINT), SUM(total), MIN(low), MAX(high) \
         FROM ngsi_history_hourly WHERE tenant = $1 AND entity_id = $2 AND attr = $3 AND hour_ms >= $4 AND hour_ms < $5 \
         GROUP BY bucket ORDER BY bucket";
    // Periods of one hour are the rollup rows themselves, in key order: no grouping, no sort.
    const ONE_HOUR_SQL: &str = "SELECT (hour_ms - $7) / $6 AS bucket, n, CAST(0 AS BIGINT), total, low, high \
         FROM ngsi_history_hourly WHERE tenant = $1 AND entity_id = $2 AND attr = $3 AND hour_ms >= $4 AND hour_ms < $5 \
         ORDER BY hour_ms";
    let history_sql = format!(
        "SELECT (at_ms - $7) / $6 AS bucket, COUNT(*), CAST({distinct} AS BIGINT), SUM(number), MIN(number), MAX(number) \
         FROM ngsi_history WHERE tenant = $1 AND entity_id = $2 AND attr = $3 AND at_ms >= $4 AND at_ms < $5 \
         GROUP BY bucket ORDER BY bucket"
    );
    let (key, periods) = ((tenant, entity, attr), (period, from));
    let rows = if hourly {
        // The rollups hold the hours before the attribute's open hour (the one of its newest
        // instance, not summed while it lasts); that hour comes from the history.
        let newest: Option<(Option<i64>,)> = db
            .fetch_optional(
                NEWEST_INSTANCE,
                &[Arg::text(tenant), Arg::text(entity), Arg::text(attr)],
            )
            .await?;
        let newest = newest.and_then(|(newest,)| newest);
        match newest.map(hour_of) {
            None => Vec::new(),
            Some(open) => {
                let rollup_sql = if period == HOUR_MS {
                    ONE_HOUR_SQL
                } else {
                    HOURLY_SQL
                };
                let mut rows =
                    period_rows(db, rollup_sql, key, (from, to.min(open)), periods).await?;
                let open_rows =
                    period_rows(db, &history_sql, key, (from.max(open), to), periods).await?;
                for row in open_rows {
                    match rows.last_mut() {
                        Some(last) if last.0 == row.0 => *last = combined(last, &row),
                        _ => rows.push(row),
                    }
                }
                rows
            }
        }
    } else {
        period_rows(db, &history_sql, key, (from, to), periods).await?
    };
    // Each period's bounds are formatted once, whatever the number of methods.
    let bounds: Vec<(Value, Value)> = rows
        .iter()
        .map(|row| {
            let start = from.saturating_add(row.0.saturating_mul(period));
            let end = if period_ms > 0 {
                start.saturating_add(period)
            } else {
                range.to.unwrap_or_else(yunnao_core::time::now_ms)
            };
            (
                yunnao_core::time::rfc3339_ms(start).into(),
                yunnao_core::time::rfc3339_ms(end).into(),
            )
        })
        .collect();
    let mut out = Map::new();
    for method in methods {
        let mut series = Vec::with_capacity(rows.len());
        for ((_, count, distinct, sum, min, max), (start, end)) in rows.iter().zip(&bounds) {
            let value = match method.as_str() {
                "totalCount" => Value::from(*count),
                "distinctCount" => Value::from(*distinct),
                "sum" => sum.map_or(Value::Null, Value::from),
                "avg" => sum.map_or(Value::Null, |s| Value::from(s / (*count).max(1) as f64)),
                "min" => min.map_or(Value::Null, Value::from),
                "max" => max.map_or(Value::Null, Value::from),
                _ => continue,
            };
            series.push(Value::Array(vec![value, start.clone(), end.clone()]));
        }
        out.insert(method.clone(), Value::Array(series));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_name_their_time_and_dataset() {
        for (at_ms, dataset) in [
            (1_795_000_000_000, "@none"),
            (-5, "@none"),
            (0, "urn:ngsi-ld:Dataset:raw"),
            (42, "a b/c?d#e:f%g"),
            (7, "水位"),
        ] {
            let id = instance_id(at_ms, dataset);
            assert!(id.starts_with("urn:ngsi-ld:Instance:"), "{id}");
            assert!(!id.contains(['/', '?', '#', ' ']), "usable in a path: {id}");
            assert_eq!(
                parse_instance_id(&id),
                Some((at_ms, dataset.to_owned())),
                "{id}"
            );
        }
        for foreign in [
            "urn:ngsi-ld:Instance:",
            "urn:ngsi-ld:Instance:x",
            "urn:ngsi-ld:Other:5",
            "5",
        ] {
            assert_eq!(parse_instance_id(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn attribute_content_ignores_only_the_system_timestamps() {
        use serde_json::json;
        let stored = json!({"type": "Property", "value": 3, "observedAt": "2026-11-29T07:00:00Z",
            "createdAt": "2026-11-29T07:00:01Z", "modifiedAt": "2026-11-29T07:00:01Z",
            "unit": {"type": "Property", "value": "m", "createdAt": "x"}});
        let cases = [
            (
                json!({"type": "Property", "value": 3, "observedAt": "2026-11-29T07:00:00Z",
                "modifiedAt": "2026-11-29T08:00:00Z", "unit": {"type": "Property", "value": "m"}}),
                true,
            ),
            (
                json!({"type": "Property", "value": 4, "observedAt": "2026-11-29T07:00:00Z",
                "unit": {"type": "Property", "value": "m"}}),
                false,
            ),
            (
                json!({"type": "Property", "value": 3, "observedAt": "2026-11-29T07:05:00Z",
                "unit": {"type": "Property", "value": "m"}}),
                false,
            ),
            (
                json!({"type": "Property", "value": 3, "observedAt": "2026-11-29T07:00:00Z"}),
                false,
            ),
            (
                json!({"type": "Property", "value": 3, "observedAt": "2026-11-29T07:00:00Z",
                "unit": {"type": "Property", "value": "m"}, "extra": 1}),
                false,
            ),
            (json!([stored.clone()]), false),
        ];
        for (other, same) in cases {
            assert_eq!(same_content(&stored, &other), same, "{other}");
            assert_eq!(same_content(&other, &stored), same, "{other}");
        }
        assert!(same_content(
            &json!([1, {"a": 2, "createdAt": 0}]),
            &json!([1, {"a": 2}])
        ));
        assert!(!same_content(&json!([1, 2]), &json!([1, 2, 3])));
    }

    #[test]
    fn durations_and_ranges_parse_as_iso_8601() {
        for (text, ms) in [
            ("PT1H", 3_600_000),
            ("PT5M", 300_000),
            ("P1D", 86_400_000),
            ("P1DT12H", 129_600_000),
            ("P1W", 604_800_000),
            ("PT30S", 30_000),
            ("P0D", 0),
        ] {
            assert_eq!(duration_ms(text).expect(text), ms, "{text}");
        }
        for bad in ["", "1H", "PT", "P", "PTXH", "P1Y", "PT1H5"] {
            assert!(duration_ms(bad).is_err(), "{bad}");
        }
        let between = TimeRange::parse(
            Some("between"),
            Some("2026-01-01T00:00:00Z"),
            Some("2026-01-02T00:00:00Z"),
        )
        .expect("between");
        assert_eq!(
            between.to.zip(between.from).map(|(t, f)| t - f),
            Some(86_400_000)
        );
        for (rel, at, end) in [
            (
                Some("between"),
                Some("2026-01-02T00:00:00Z"),
                Some("2026-01-01T00:00:00Z"),
            ),
            (Some("before"), None, None),
            (Some("during"), Some("2026-01-01T00:00:00Z"), None),
            (Some("after"), Some("yesterday"), None),
        ] {
            assert!(
                TimeRange::parse(rel, at, end).is_err(),
                "{rel:?} {at:?} {end:?}"
            );
        }
    }
}
