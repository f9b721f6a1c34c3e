//! Catalogue management: the approval bureau and a service's owning department change a
//! service by publishing its next version. Each version is kept; the catalogue in use is the
//! seed with the newest stored version of each service, checked as a whole before it replaces
//! the one in use. Applications keep the plan they were made on (`svc_applications.plan_json`).

use crate::catalogue::{Catalogue, Service};
use std::sync::{Arc, RwLock};
use yunnao_core::Problem;
use yunnao_identity::{Action, Principal, Resource};
use yunnao_store::{Db, DbResultExt, sqlx};

/// The department that manages the whole catalogue.
pub const BUREAU: &str = "approval";

#[derive(Clone)]
pub struct CatalogueStore {
    db: Db,
    current: Arc<RwLock<Arc<Catalogue>>>,
}

impl CatalogueStore {
    /// The seed with every stored newer version applied.
    pub async fn load(db: Db) -> Result<CatalogueStore, Problem> {
        let mut catalogue = Catalogue::seed().map_err(Problem::internal)?;
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT code, version, body_json FROM svc_service_versions ORDER BY code, version",
        )
        .fetch_all(db.pool())
        .await
        .db()?;
        for (code, version, body) in rows {
            let Ok(service) = serde_json::from_str::<Service>(&body) else {
                tracing::error!(code, version, "a stored service version does not parse");
                continue;
            };
            match catalogue.services.iter_mut().find(|s| s.code == code) {
                Some(s) if s.version < service.version => *s = service,
                Some(_) => {}
                None => catalogue.services.push(service),
            }
        }
        catalogue.check().map_err(Problem::internal)?;
        Ok(CatalogueStore {
            db,
            current: Arc::new(RwLock::new(Arc::new(catalogue))),
        })
    }

    pub fn shared(&self) -> Arc<RwLock<Arc<Catalogue>>> {
        self.current.clone()
    }

    pub fn current(&self) -> Arc<Catalogue> {
        self.current
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Publishes a service's next version (or a new service): its owning department's
    /// admins or the approval bureau's.
    pub async fn publish(
        &self,
        principal: &Principal,
        service: Service,
    ) -> Result<Service, Problem> {
        let catalogue = self.current();
        let previous = catalogue.service(&service.code);
        let manages = |department: &str| {
            principal.may(Resource::Policies, Action::Write, department)
                || principal.may(Resource::Policies, Action::Write, BUREAU)
        };
        if !manages(&service.department) || previous.is_some_and(|p| !manages(&p.department)) {
            return Err(Problem::forbidden(
                "a service is changed by its department's admins or the approval bureau's",
            ));
        }
        let expected = previous.map_or(1, |p| p.version + 1);
        if service.version != expected {
            return Err(Problem::conflict(format!(
                "version: the next version of {} is {expected}",
                service.code
            ))
            .with_extension("field", "version"));
        }
        let mut next = (*catalogue).clone();
        match next.services.iter_mut().find(|s| s.code == service.code) {
            Some(s) => *s = service.clone(),
            None => next.services.push(service.clone()),
        }
        next.check()
            .map_err(|e| Problem::validation(e).with_extension("field", "service"))?;
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO svc_service_versions (code, version, body_json, changed_by, changed_at_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&service.code)
        .bind(service.version)
        .bind(crate::applications::json(&service))
        .bind(&principal.name)
        .bind(yunnao_core::time::now_ms())
        .execute(&mut **tx)
        .await
        .db()?;
        if inserted.rows_affected() == 0 {
            return Err(Problem::conflict("this version was published already"));
        }
        tx.commit().await?;
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(next);
        }
        Ok(service)
    }

    /// A service's published versions, oldest first (the seed's is version 1).
    pub async fn history(&self, code: &str) -> Result<Vec<(i64, String, String)>, Problem> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT version, changed_by, changed_at_ms FROM svc_service_versions WHERE code = $1 ORDER BY version",
        )
        .bind(code)
        .fetch_all(self.db.pool())
        .await
        .db()?;
        Ok(rows
            .into_iter()
            .map(|(v, by, at)| (v, by, yunnao_core::time::rfc3339_ms(at)))
            .collect())
    }
}
