//! The data hub's catalogue through the real API on both backends: CKAN's action API answered
//! in CKAN's shapes (GET with a query string and POST with JSON, as ckanapi sends), Chinese
//! search with facets and filters, core datasets listed only to their department and the
//! bureau, registering a dataset by the department's admin and refused otherwise, DCAT-AP as
//! Turtle that an RDF parser reads and as JSON-LD.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::TestServer;
use yunnao_store::backend_tests;
use yunnao_store::testing::TestBackend;

async fn get(server: &TestServer, path: &str, token: Option<&str>) -> (u16, Value) {
    let response = server.request(Method::GET, path, token, None).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(server: &TestServer, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let response = server.request(Method::POST, path, token, Some(body)).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn ckan_answers_in_ckans_shapes(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let (status, list) = get(&server, "/api/3/action/package_list", None).await;
    assert_eq!(
        (status, list["success"].clone()),
        (200, json!(true)),
        "{list}"
    );
    let ids: Vec<&str> = list["result"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(ids.len() >= 30, "{ids:?}");
    assert!(
        !ids.contains(&"household-register"),
        "core data is not listed to the public"
    );

    let (status, shown) = get(
        &server,
        "/api/3/action/package_show?id=market-entities",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let package = &shown["result"];
    assert_eq!(package["name"], "market-entities");
    assert_eq!(package["organization"]["name"], "market");
    assert_eq!(package["organization"]["title"], "市市场监管局");
    assert!(
        package["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .any(|t| t["name"] == "营业执照")
    );
    let extras: Vec<&str> = package["extras"]
        .as_array()
        .expect("extras")
        .iter()
        .filter_map(|e| e["key"].as_str())
        .collect();
    assert!(extras.contains(&"schema") && extras.contains(&"data_level"));
    let (status, missing) = get(&server, "/api/3/action/package_show?id=nonesuch", None).await;
    assert_eq!(
        (
            status,
            missing["success"].clone(),
            missing["error"]["__type"].clone()
        ),
        (404, json!(false), json!("Not Found Error"))
    );

    // Search: Chinese words, facets, filters, paging and sorting; POST with JSON as ckanapi does.
    let (status, found) = get(&server, "/api/3/action/package_search?q=空气质量", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        found["result"]["results"][0]["name"], "air-quality-daily",
        "{found}"
    );
    let (status, found) = post(
        &server,
        "/api/3/action/package_search",
        None,
        json!({
        "q": "*:*", "fq": "groups:健康医疗", "rows": 3, "start": 0,
        "facet.field": ["organization", "groups", "tags"], "sort": "name asc"}),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let result = &found["result"];
    let count = result["count"].as_u64().expect("count");
    assert!(count >= 5, "{count}");
    let names: Vec<&str> = result["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names.len(), 3);
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "name asc");
    assert!(
        result["results"]
            .as_array()
            .expect("results")
            .iter()
            .all(|p| p["groups"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g["name"] == "健康医疗")))
    );
    assert_eq!(
        result["search_facets"]["groups"]["items"]
            .as_array()
            .and_then(|i| i.iter().find(|i| i["name"] == "健康医疗"))
            .map(|i| i["count"].clone()),
        Some(json!(count))
    );
    assert!(result["facets"]["organization"]["health"].as_u64() >= Some(2));
    let (_, second) = get(&server, "/api/3/action/package_search?fq=groups:%E5%81%A5%E5%BA%B7%E5%8C%BB%E7%96%97&rows=3&start=3&sort=name%20asc", None).await;
    let second_names: Vec<&str> = second["result"]["results"]
        .as_array()
        .expect("page")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        second_names.iter().all(|n| !names.contains(n)),
        "pages do not overlap"
    );
    for (path, status, ckan_type) in [
        (
            "/api/3/action/package_search?sort=nonsense",
            422,
            "Validation Error",
        ),
        (
            "/api/3/action/package_search?fq=colour:red",
            422,
            "Validation Error",
        ),
        (
            "/api/3/action/package_search?rows=many",
            422,
            "Validation Error",
        ),
        (
            "/api/3/action/datastore_search_sql?sql=SELECT%201",
            403,
            "Authorization Error",
        ),
        ("/api/3/action/package_create", 400, "Validation Error"),
    ] {
        let response = server.request(Method::GET, path, None, None).await;
        assert_eq!(response.status().as_u16(), status, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let body: Value = response.json().await.expect("json");
        assert_eq!(
            (body["success"].clone(), body["error"]["__type"].clone()),
            (json!(false), json!(ckan_type)),
            "{path}"
        );
    }
    let (_, orgs) = get(
        &server,
        "/api/3/action/organization_list?all_fields=true",
        None,
    )
    .await;
    let orgs = orgs["result"].as_array().expect("orgs");
    assert!(orgs.len() >= 15);
    assert!(
        orgs.iter()
            .any(|o| o["name"] == "transport" && o["package_count"].as_u64() >= Some(2))
    );
    let (_, groups) = get(&server, "/api/3/action/group_list", None).await;
    for theme in ["交通出行", "生态环保", "健康医疗"] {
        assert!(
            groups["result"]
                .as_array()
                .expect("groups")
                .iter()
                .any(|g| g == theme),
            "{theme}"
        );
    }
    let (status, _) = get(&server, "/api/3/action/status_show", None).await;
    assert_eq!(status, 200);
    server.cleanup().await;
}

async fn core_data_and_registration_follow_the_department(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let police = server
        .user(&admin, "data.police", "police", "dept_admin")
        .await;
    let water = server
        .user(&admin, "data.water", "water", "dept_admin")
        .await;
    let water_operator = server
        .user(&admin, "data.water.op", "water", "operator")
        .await;
    // A core dataset: its department and the bureau see it, nobody else does.
    for (token, status) in [
        (None, 404),
        (Some(&water), 404),
        (Some(&police), 200),
        (Some(&admin), 200),
    ] {
        let (got, _) = get(
            &server,
            "/api/v1/data/datasets/household-register",
            token.map(String::as_str),
        )
        .await;
        assert_eq!(got, status, "{token:?}");
    }
    let (_, listed) = get(&server, "/api/v1/data/datasets?level=core", Some(&police)).await;
    let ids: Vec<&str> = listed["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|e| e["dataset"]["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        ["household-register"],
        "police sees its own core data only"
    );

    let dataset = json!({
        "id": "reservoir-levels", "department": "water", "title_zh": "水库水位日报", "title_en": "Reservoir levels",
        "description_zh": "大中型水库每日水位与蓄水量。", "description_en": "Daily levels of large and medium reservoirs.",
        "themes": ["资源能源", "生态环保"], "keywords": ["水库", "水位"], "frequency": "daily", "spatial": "青岛市",
        "temporal_start": "2020-01-01", "temporal_end": null, "source_system": "青岛市水资源监控系统", "contact": "市水务管理局",
        "licence": "CC-BY-4.0", "level": "general", "sharing": "open",
        "fields": [
            {"name": "reservoir", "type": "text", "unit": null, "description_zh": "水库", "level": "general", "personal": "none"},
            {"name": "level_m", "type": "number", "unit": "m", "description_zh": "水位", "level": "general", "personal": "none"}
        ]
    });
    let (status, _) = post(&server, "/api/v1/data/datasets", None, dataset.clone()).await;
    assert_eq!(status, 401);
    for token in [&police, &water_operator] {
        let (status, _) = post(
            &server,
            "/api/v1/data/datasets",
            Some(token),
            dataset.clone(),
        )
        .await;
        assert_eq!(status, 403, "another department, or not an admin");
    }
    let mut open_personal = dataset.clone();
    open_personal["id"] = json!("reservoir-keepers");
    open_personal["fields"][0]["personal"] = json!("personal");
    let (status, problem) = post(
        &server,
        "/api/v1/data/datasets",
        Some(&water),
        open_personal,
    )
    .await;
    assert_eq!(
        (status, problem["field"].clone()),
        (422, json!("sharing")),
        "{problem}"
    );
    let (status, created) = post(
        &server,
        "/api/v1/data/datasets",
        Some(&water),
        dataset.clone(),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert!(created["created_at"].is_string());
    let (status, _) = post(&server, "/api/v1/data/datasets", Some(&water), dataset).await;
    assert_eq!(status, 409);
    let (_, found) = get(&server, "/api/v1/data/datasets?q=水位&theme=资源能源", None).await;
    assert_eq!(
        found["results"][0]["dataset"]["id"], "reservoir-levels",
        "{found}"
    );
    assert!(
        found["facets"]["department"]
            .as_array()
            .is_some_and(|f| f.iter().any(|d| d[0] == "water"))
    );
    let (status, _) = get(&server, "/api/v1/data/datasets?sort=random", None).await;
    assert_eq!(status, 422);
    let (status, _) = get(&server, "/api/v1/data/datasets?colour=red", None).await;
    assert_eq!(status, 400, "unknown query parameters are refused");
    server.cleanup().await;
}

/// DCAT-AP 3: the Turtle parses as RDF and says what the catalogue holds; the JSON-LD too.
async fn dcat_exports_parse_as_rdf(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let response = server
        .request(Method::GET, "/api/v1/data/catalog.ttl", None, None)
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/turtle"))
    );
    let turtle = response.text().await.expect("text");
    let mut datasets = 0;
    let mut chinese_titles = 0;
    let mut triples = 0;
    for triple in oxttl::TurtleParser::new().for_slice(turtle.as_bytes()) {
        let triple = triple.expect("valid Turtle");
        triples += 1;
        let (p, o) = (
            triple.predicate.as_str().to_owned(),
            triple.object.to_string(),
        );
        if p == "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
            && o == "<http://www.w3.org/ns/dcat#Dataset>"
        {
            datasets += 1;
        }
        if p == "http://purl.org/dc/terms/title" && o.ends_with("@zh") {
            chinese_titles += 1;
        }
    }
    let (_, list) = get(&server, "/api/3/action/package_list", None).await;
    let listed = list["result"].as_array().expect("list").len();
    assert_eq!(datasets, listed, "{triples} triples");
    assert_eq!(
        chinese_titles,
        listed + 1,
        "every dataset and the catalogue"
    );
    assert!(turtle.contains("<http://publications.europa.eu/resource/authority/frequency/DAILY>"));
    assert!(
        turtle
            .contains("<http://publications.europa.eu/resource/authority/access-right/RESTRICTED>")
    );

    let response = server
        .request(Method::GET, "/api/v1/data/catalog.jsonld", None, None)
        .await;
    assert_eq!(response.headers()["content-type"], "application/ld+json");
    let nodes: Value = response.json().await.expect("json");
    let nodes = nodes
        .as_array()
        .expect("expanded JSON-LD is an array of nodes");
    let typed = |t: &str| {
        nodes
            .iter()
            .filter(|n| {
                n["@type"]
                    .as_array()
                    .is_some_and(|ts| ts.iter().any(|x| x == t))
            })
            .count()
    };
    assert_eq!(typed("http://www.w3.org/ns/dcat#Catalog"), 1);
    assert_eq!(typed("http://www.w3.org/ns/dcat#Dataset"), listed);
    let air = nodes
        .iter()
        .find(|n| {
            n["@id"]
                .as_str()
                .is_some_and(|i| i.ends_with("/air-quality-daily"))
        })
        .expect("air quality");
    assert_eq!(
        air["http://purl.org/dc/terms/title"][0],
        json!({"@value": "空气质量日报", "@language": "zh"})
    );
    server.cleanup().await;
}

backend_tests!(ckan_answers_in_ckans_shapes);
backend_tests!(core_data_and_registration_follow_the_department);
backend_tests!(dcat_exports_parse_as_rdf);
