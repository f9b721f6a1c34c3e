//! The broker as a service, without HTTP: who sees what, on both backends.

mod support;

use serde_json::json;
use yunnao_context::jsonld::Context;
use yunnao_context::model::parse_entity;
use yunnao_context::{Selection, Viewer};
use yunnao_store::testing::TestBackend;

async fn departments_see_their_own_and_open_data(backend: TestBackend) {
    let harness = support::broker(backend).await;
    let broker = &harness.broker;
    let context = Context::core();
    let entity = |id: &str| {
        parse_entity(
            json!({"id": id, "type": "Sensor", "pm25": {"type": "Property", "value": 35}}),
            &context,
            "2026-12-06T08:00:00Z",
        )
        .expect("entity")
    };
    broker
        .create("city", &entity("urn:ngsi-ld:Sensor:env-1"), "environment")
        .await
        .expect("create");
    broker
        .create("city", &entity("urn:ngsi-ld:Sensor:traffic-1"), "traffic")
        .await
        .expect("create");
    assert!(
        broker
            .set_open("city", "urn:ngsi-ld:Sensor:traffic-1", true)
            .await
            .expect("open")
    );
    let selection = Selection {
        types: vec![context.expand("Sensor")],
        ..Selection::default()
    };
    let ids = |viewer: Viewer| {
        let selection = selection.clone();
        async move {
            broker
                .select("city", &viewer, &selection, false)
                .await
                .expect("select")
                .entities
                .into_iter()
                .map(|s| s.entity.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ids(Viewer::All).await,
        ["urn:ngsi-ld:Sensor:env-1", "urn:ngsi-ld:Sensor:traffic-1"]
    );
    assert_eq!(
        ids(Viewer::Department("environment".into())).await,
        ["urn:ngsi-ld:Sensor:env-1", "urn:ngsi-ld:Sensor:traffic-1"]
    );
    assert_eq!(
        ids(Viewer::Department("water".into())).await,
        ["urn:ngsi-ld:Sensor:traffic-1"]
    );
    assert_eq!(ids(Viewer::Public).await, ["urn:ngsi-ld:Sensor:traffic-1"]);
    let hidden = broker
        .get("city", "urn:ngsi-ld:Sensor:env-1", &Viewer::Public)
        .await
        .expect("get");
    assert!(
        hidden.is_none(),
        "a closed entity is not shown to the public"
    );
}

yunnao_store::backend_tests!(departments_see_their_own_and_open_data);
