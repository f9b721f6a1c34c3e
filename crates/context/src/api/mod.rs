//! `/ngsi-ld/v1`: entities (create, retrieve, replace, merge, delete; attribute append, update,
//! partial update, replace, delete) and queries (`GET /entities`, `POST /entityOperations/query`),
//! with `@context` from a `Link` header or the body, tenants, and the platform's authentication.

mod attributes;
mod batch;
mod contexts;
mod discovery;
mod entities;
mod entity_maps;
mod forward;
mod map_use;
mod query;
mod registrations;
mod request;
mod subscriptions;
mod temporal;

use self::{
    attributes::*, batch::*, contexts::*, discovery::*, entities::*, entity_maps::*, query::*,
    registrations::*, subscriptions::*, temporal::*,
};
use crate::ContextBroker;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use yunnao_core::Problem;

type NgsiResult<T> = Result<T, Problem>;

pub fn router() -> OpenApiRouter<ContextBroker> {
    OpenApiRouter::new()
        .routes(routes!(query_entities, create_entity, purge_entities))
        .routes(routes!(
            retrieve_entity,
            replace_entity,
            merge_entity,
            delete_entity
        ))
        .routes(routes!(append_attributes, update_attributes))
        .routes(routes!(
            partial_attribute_update,
            replace_attribute,
            delete_attribute
        ))
        .routes(routes!(query_post))
        .routes(routes!(list_types))
        .routes(routes!(type_info))
        .routes(routes!(list_attributes))
        .routes(routes!(attribute_info))
        .routes(routes!(set_open_data))
        .routes(routes!(batch_create))
        .routes(routes!(batch_upsert))
        .routes(routes!(batch_update))
        .routes(routes!(batch_delete))
        .routes(routes!(batch_merge))
        .routes(routes!(temporal_entity, delete_temporal))
        .routes(routes!(temporal_query, create_temporal))
        .routes(routes!(add_temporal_attributes))
        .routes(routes!(delete_temporal_attribute))
        .routes(routes!(delete_temporal_instance, modify_temporal_instance))
        .routes(routes!(temporal_query_post))
        .routes(routes!(add_context, list_contexts))
        .routes(routes!(serve_context, delete_context))
        .routes(routes!(create_subscription, list_subscriptions))
        .routes(routes!(
            get_subscription,
            update_subscription,
            delete_subscription
        ))
        .routes(routes!(
            create_csource_subscription,
            list_csource_subscriptions
        ))
        .routes(routes!(
            get_csource_subscription,
            update_csource_subscription,
            delete_csource_subscription
        ))
        .routes(routes!(source_identity))
        .routes(routes!(create_entity_map))
        .routes(routes!(create_temporal_entity_map))
        .routes(routes!(
            retrieve_entity_map,
            update_entity_map,
            delete_entity_map
        ))
        .routes(routes!(create_registration, query_registrations))
        .routes(routes!(
            get_registration,
            update_registration,
            delete_registration
        ))
        .layer(axum::middleware::from_fn(crate::negotiation::ngsi_edge))
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_answers_link_the_core_context() {
        assert_eq!(
            crate::jsonld::CORE_LINK,
            format!(
                "<{}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"",
                crate::jsonld::CORE_CONTEXT_URL
            )
        );
    }
}
