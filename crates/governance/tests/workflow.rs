//! The incident workflow through the service itself (no HTTP server): paths through
//! `workflow::STEPS`, who may take each step, and what is refused, on both backends. The HTTP
//! API over it is tested in `crates/yunnao/tests/governance.rs`.

use yunnao_governance::incidents::{Location, Report, Source, TransitionInput};
use yunnao_governance::workflow::{Action, Actor, STEPS, State};
use yunnao_governance::{Governance, GovernanceConfig};
use yunnao_identity::{Principal, PrincipalKind, Role};
use yunnao_store::testing::{TestBackend, TestDb};

struct Harness {
    governance: Governance,
    _db: TestDb,
}

async fn harness(backend: TestBackend) -> Harness {
    let db = TestDb::new(backend).await.expect("test database");
    yunnao_store::migrate::run(
        &db.db,
        &[yunnao_identity::MIGRATIONS, yunnao_governance::MIGRATIONS],
    )
    .await
    .expect("migrations");
    let identity = yunnao_identity::Identity::new(
        db.db.clone(),
        yunnao_bus::Bus::in_process(),
        yunnao_identity::PlatformKeys::generate().expect("keys"),
        yunnao_identity::IdentityConfig::default(),
    );
    identity.seed(Some("test-password")).await.expect("seed");
    let governance = Governance::start(
        db.db.clone(),
        yunnao_bus::Bus::in_process(),
        identity,
        GovernanceConfig {
            // Coarse cells: the grid builds in a moment; the workflow does not care.
            grid_resolution: 7,
            auto_dispatch: false,
            ..GovernanceConfig::default()
        },
    )
    .await
    .expect("governance");
    Harness {
        governance,
        _db: db,
    }
}

fn person(name: &str, department: &str, role: Role) -> Principal {
    Principal {
        kind: PrincipalKind::User,
        id: format!("user-{name}"),
        name: name.into(),
        department: department.into(),
        roles: vec![role],
        scopes: Vec::new(),
        session: None,
    }
}

/// The workflow's actors in this test: the centre's operator (who also verifies) and the
/// water bureau's operator (the handling department).
fn actor(governance: &Governance, by: Actor) -> Principal {
    match by {
        Actor::Centre | Actor::Verifier => {
            person("centre.op", &governance.config.centre, Role::Operator)
        }
        Actor::Handler => person("water.op", "water", Role::Operator),
    }
}

fn step(action: Action) -> TransitionInput {
    TransitionInput {
        action: action.as_str().into(),
        comment: format!("{} by the test", action.as_str()),
        department: action.names_department().then(|| "water".to_owned()),
        into: None,
        photos: Vec::new(),
    }
}

async fn new_case(governance: &Governance) -> String {
    let mut report = Report::new(Source::Api, "C0101", "上水井盖缺失", "test");
    report.address = "中山路".into();
    report.location = Some(Location {
        lon: 120.3165,
        lat: 36.0656,
    });
    let created = governance.report(report).await.expect("report");
    assert_eq!(created.incident.state, State::Received);
    created.incident.id
}

/// Paths from received to an end, as the actions taken in order.
const PATHS: &[&[Action]] = &[
    &[
        Action::Register,
        Action::Dispatch,
        Action::Accept,
        Action::Complete,
        Action::Close,
    ],
    &[
        Action::Register,
        Action::Dispatch,
        Action::SendBack,
        Action::Dispatch,
        Action::Accept,
        Action::Reassign,
        Action::Accept,
        Action::Complete,
        Action::Rework,
        Action::Complete,
        Action::Close,
    ],
    &[Action::Reject],
    &[Action::Register, Action::Reject],
];

async fn every_path_leads_where_the_table_says(backend: TestBackend) {
    let h = harness(backend).await;
    let g = &h.governance;
    for path in PATHS {
        let id = new_case(g).await;
        for action in *path {
            let row = action.step();
            let incident = g
                .transition(&id, step(*action), &actor(g, row.by))
                .await
                .unwrap_or_else(|p| panic!("{path:?}: {action:?}: {p}"));
            assert_eq!(incident.state, row.to, "{path:?}: {action:?}");
        }
        // The centre sees every case, so what it is refused is the state.
        let end = g
            .transition(&id, step(Action::Register), &actor(g, Actor::Centre))
            .await
            .expect_err("nothing follows an end");
        assert_eq!(end.status, 409, "{path:?}");
    }
}

async fn steps_from_the_wrong_state_or_by_the_wrong_people_are_refused(backend: TestBackend) {
    let h = harness(backend).await;
    let g = &h.governance;
    let id = new_case(g).await;
    // Every action the table does not allow from `received` is 409 for the centre (which may
    // take every step); the handling department does not see a case before it is dispatched.
    for row in STEPS.iter().filter(|s| !s.from.contains(&State::Received)) {
        let refused = g
            .transition(&id, step(row.action), &actor(g, Actor::Centre))
            .await
            .expect_err("not from received");
        assert_eq!(refused.status, 409, "{:?}: {refused}", row.action);
    }
    let handler = actor(g, Actor::Handler);
    let refused = g
        .transition(&id, step(Action::Register), &handler)
        .await
        .expect_err("not yet the handler's case");
    assert_eq!(refused.status, 404);
    g.transition(&id, step(Action::Register), &actor(g, Actor::Centre))
        .await
        .expect("register");
    g.transition(&id, step(Action::Dispatch), &actor(g, Actor::Centre))
        .await
        .expect("dispatch");
    // Now the handling department sees it, but a centre's step is still not theirs: 403, and
    // the role is checked before the state.
    for action in [Action::Reassign, Action::Register] {
        let refused = g
            .transition(&id, step(action), &handler)
            .await
            .expect_err("the centre's step");
        assert_eq!(refused.status, 403, "{action:?}");
    }
    // Another department's operator does not even see the case.
    let stranger = person("police.op", "police", Role::Operator);
    let refused = g
        .transition(&id, step(Action::Accept), &stranger)
        .await
        .expect_err("not the handling department");
    assert_eq!(refused.status, 404);
    let unknown = g
        .transition(
            &id,
            TransitionInput {
                action: "teleport".into(),
                ..step(Action::Accept)
            },
            &actor(g, Actor::Handler),
        )
        .await
        .expect_err("unknown action");
    assert_eq!(unknown.status, 422);
}

yunnao_store::backend_tests!(
    every_path_leads_where_the_table_says,
    steps_from_the_wrong_state_or_by_the_wrong_people_are_refused
);
