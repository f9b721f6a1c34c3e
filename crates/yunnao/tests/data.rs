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
    let mut statements: Vec<(String, String, String)> = Vec::new();
    for triple in oxttl::TurtleParser::new().for_slice(turtle.as_bytes()) {
        let triple = triple.expect("valid Turtle");
        let (s, p, o) = (
            triple.subject.to_string(),
            triple.predicate.as_str().to_owned(),
            triple.object.to_string(),
        );
        if p == "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
            && o == "<http://www.w3.org/ns/dcat#Dataset>"
        {
            datasets += 1;
        }
        if p == "http://purl.org/dc/terms/title"
            && o.ends_with("@zh")
            && (s.contains("/data/datasets/") || s.ends_with("/data/catalog>"))
        {
            chinese_titles += 1;
        }
        statements.push((s, p, o));
    }
    let (_, list) = get(&server, "/api/3/action/package_list", None).await;
    let listed = list["result"].as_array().expect("list").len();
    assert_eq!(datasets, listed, "{} triples", statements.len());
    assert_eq!(
        chinese_titles,
        listed + 1,
        "every dataset and the catalogue"
    );
    // DCAT-AP 3's SHACL ranges: what a property names is typed as the profile says, and the
    // mandatory members are there.
    let typed = |node: &str, class: &str| {
        statements.iter().any(|(s, p, o)| {
            s == node
                && p == "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
                && o == &format!("<{class}>")
        })
    };
    let has = |node: &str, property: &str| {
        statements
            .iter()
            .any(|(s, p, _)| s == node && p == property)
    };
    for (property, class) in [
        (
            "http://www.w3.org/ns/dcat#theme",
            "http://www.w3.org/2004/02/skos/core#Concept",
        ),
        (
            "http://purl.org/dc/terms/license",
            "http://purl.org/dc/terms/LicenseDocument",
        ),
        (
            "http://purl.org/dc/terms/spatial",
            "http://purl.org/dc/terms/Location",
        ),
        (
            "http://purl.org/dc/terms/publisher",
            "http://xmlns.com/foaf/0.1/Agent",
        ),
        (
            "http://purl.org/dc/terms/accrualPeriodicity",
            "http://purl.org/dc/terms/Frequency",
        ),
        (
            "http://purl.org/dc/terms/accessRights",
            "http://purl.org/dc/terms/RightsStatement",
        ),
        (
            "http://www.w3.org/ns/dcat#distribution",
            "http://www.w3.org/ns/dcat#Distribution",
        ),
        (
            "http://www.w3.org/ns/dcat#mediaType",
            "http://purl.org/dc/terms/MediaType",
        ),
        (
            "http://www.w3.org/ns/dcat#themeTaxonomy",
            "http://www.w3.org/2004/02/skos/core#ConceptScheme",
        ),
    ] {
        let objects: Vec<&String> = statements
            .iter()
            .filter(|(_, p, _)| p == property)
            .map(|(_, _, o)| o)
            .collect();
        assert!(!objects.is_empty(), "{property} is used");
        for o in objects {
            assert!(typed(o, class), "{o} ({property}) is a {class}");
        }
    }
    for (s, p, o) in &statements {
        if p == "http://www.w3.org/ns/dcat#distribution" {
            assert!(
                has(o, "http://www.w3.org/ns/dcat#accessURL"),
                "{s}: accessURL"
            );
        }
        if p == "http://purl.org/dc/terms/publisher" {
            assert!(has(o, "http://xmlns.com/foaf/0.1/name"), "{o}: foaf:name");
        }
        if p == "http://www.w3.org/ns/dcat#theme" {
            assert!(
                has(o, "http://www.w3.org/2004/02/skos/core#prefLabel"),
                "{o}: prefLabel"
            );
        }
    }
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

async fn upload(
    server: &TestServer,
    path: &str,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let response = server
        .client
        .post(server.url(path))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("upload sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

const MARKET_CSV: &str = "credit_code,name,legal_person,legal_person_id,district,registered_capital,established\n\
913702000000000001,青岛海信有限公司,张三,370202199001011237,市南区,100.5,2019-03-01\n\
913702000000000002,青岛啤酒有限公司,李四,370203198502021232,市北区,2000,2020/5/6\n\
913702000000000003,青岛港有限公司,王五,370212197012121232,崂山区,5000,20210707\n\
913702000000000004,青岛海尔有限公司,赵六,370202196808081232,市南区,80,2022-12\n";

/// Imports as whole files or not at all: CSV in UTF-8 and GBK, XLSX, JSON; a file with bad
/// rows refused naming each, nothing kept; types inferred from the whole file; the table read
/// through `datastore_search` in CKAN's shape, with filters, text, sorting and paging.
async fn imports_are_whole_or_refused(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let market = server
        .user(&admin, "market.owner", "market", "dept_admin")
        .await;
    let water = server
        .user(&admin, "water.owner", "water", "dept_admin")
        .await;
    let path = "/api/v1/data/datasets/market-entities/versions";

    let (status, report) = upload(&server, path, &market, "text/csv", MARKET_CSV.into()).await;
    assert_eq!(status, 201, "{report}");
    assert_eq!(report["version"]["version"], 1);
    assert_eq!(report["version"]["rows"], 4);
    assert_eq!(report["version"]["quality"]["validity"], 1.0);

    // Another department may not import into market's dataset.
    let (status, _) = upload(&server, path, &water, "text/csv", MARKET_CSV.into()).await;
    assert_eq!(status, 403);

    // GBK, as Chinese spreadsheet programs save it.
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(MARKET_CSV);
    assert!(!unmappable);
    let (status, report) = upload(&server, path, &market, "text/csv", gbk.to_vec()).await;
    assert_eq!(status, 201, "{report}");
    assert_eq!(report["version"]["encoding"], "gb18030");

    // Bad rows: every one named, nothing imported.
    let bad = format!(
        "{MARKET_CSV}913702000000000005,青岛甲公司,钱七,370202199001011237,市南区,many,2020-01-01\n\
         913702000000000006,青岛乙公司,孙八,370202199001011237,市南区,10,2020-02-30\n"
    );
    let (status, problem) = upload(&server, path, &market, "text/csv", bad.into()).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["error_count"], 2);
    let errors = problem["errors"].as_array().expect("errors");
    assert_eq!(
        (errors[0]["row"].clone(), errors[0]["field"].clone()),
        (json!(5), json!("registered_capital"))
    );
    assert_eq!(
        (errors[1]["row"].clone(), errors[1]["field"].clone()),
        (json!(6), json!("established"))
    );
    // Undecodable bytes named by row when the file is declared UTF-8.
    let mut broken = MARKET_CSV.as_bytes().to_vec();
    broken.extend_from_slice(b"913702000000000007,\xff\xfe,x,y,z,1,2020-01-01\n");
    let (status, problem) = upload(
        &server,
        &format!("{path}?encoding=utf-8"),
        &market,
        "text/csv",
        broken,
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["row"], 5);
    let (status, problem) = upload(
        &server,
        path,
        &market,
        "text/csv",
        b"credit_code,colour\n1,red\n".to_vec(),
    )
    .await;
    assert_eq!(status, 422);
    assert!(problem["detail"].as_str().unwrap_or("").contains("colour"));
    let (_, versions) = get(
        &server,
        "/api/v1/data/datasets/market-entities/versions",
        None,
    )
    .await;
    assert_eq!(
        versions.as_array().map(Vec::len),
        Some(2),
        "nothing half-imported"
    );

    // XLSX with Chinese headers (the fields' descriptions), and JSON.
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    for (c, h) in [
        "统一社会信用代码",
        "名称",
        "所在区市",
        "注册资本",
        "成立日期",
    ]
    .iter()
    .enumerate()
    {
        sheet.write_string(0, c as u16, *h).expect("header");
    }
    sheet
        .write_string(1, 0, "913702000000000009")
        .expect("cell");
    sheet.write_string(1, 1, "青岛丙公司").expect("cell");
    sheet.write_string(1, 2, "黄岛区").expect("cell");
    sheet.write_number(1, 3, 12.5).expect("cell");
    sheet.write_string(1, 4, "2023-04-05").expect("cell");
    let xlsx = workbook.save_to_buffer().expect("xlsx");
    let (status, report) = upload(
        &server,
        &format!("{path}?format=xlsx"),
        &market,
        "application/octet-stream",
        xlsx,
    )
    .await;
    assert_eq!(
        (status, report["version"]["rows"].clone()),
        (201, json!(1)),
        "{report}"
    );
    let rows = json!([
        {"credit_code": "913702000000000010", "name": "青岛丁公司", "district": "市南区", "registered_capital": 1, "established": "2024-01-01"},
        {"credit_code": "913702000000000011", "name": "青岛戊公司", "district": "市北区", "registered_capital": null, "established": "2024-02-01"}
    ]);
    let (status, report) = upload(
        &server,
        path,
        &market,
        "application/json",
        rows.to_string().into(),
    )
    .await;
    assert_eq!(
        (status, report["version"]["version"].clone()),
        (201, json!(4)),
        "{report}"
    );

    // Inference reads the whole file: a late decimal makes a number, a leading zero a text.
    let (status, fields) = upload(
        &server,
        "/api/v1/data/infer?format=csv",
        &market,
        "text/csv",
        b"code,amount,day\n0532,1,2024-01-01\n0531,2,2024-01-02\n0530,2.5,2024-01-03\n".to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{fields}");
    let types: Vec<&str> = fields
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["type"].as_str())
        .collect();
    assert_eq!(types, ["text", "number", "date"]);

    // Re-import the CSV (version 5) and search it as CKAN's DataStore does.
    let (status, _) = upload(&server, path, &market, "text/csv", MARKET_CSV.into()).await;
    assert_eq!(status, 201);
    let (status, found) = post(
        &server,
        "/api/3/action/datastore_search",
        Some(&market),
        json!({"resource_id": "market-entities", "filters": {"district": "市南区"}, "sort": "established desc", "limit": 1}),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let result = &found["result"];
    assert_eq!(found["success"], true);
    assert_eq!(result["total"], 2);
    assert_eq!(result["records"].as_array().map(Vec::len), Some(1));
    assert_eq!(result["records"][0]["name"], "青岛海尔有限公司");
    assert_eq!(result["records"][0]["established"], "2022-12-01");
    assert_eq!(result["fields"][0], json!({"id": "_id", "type": "int"}));
    assert!(result["_links"]["next"].as_str().is_some());
    let (status, found) = get(
        &server,
        "/api/3/action/datastore_search?resource_id=market-entities&q=%E5%95%A4%E9%85%92",
        Some(&market),
    )
    .await;
    assert_eq!((status, found["result"]["total"].clone()), (200, json!(1)));
    let (status, problem) = get(
        &server,
        "/api/3/action/datastore_search?resource_id=market-entities&filters=%7B%22colour%22%3A1%7D",
        Some(&market),
    )
    .await;
    assert_eq!(
        (status, problem["success"].clone()),
        (400, json!(false)),
        "{problem}"
    );
    let (status, problem) = get(
        &server,
        "/api/3/action/datastore_search?resource_id=market-entities&sort=legal_person_id",
        Some(&market),
    )
    .await;
    assert_eq!(status, 400, "a sealed field is not sortable: {problem}");
    let (_, package) = get(
        &server,
        "/api/3/action/package_show?id=market-entities",
        None,
    )
    .await;
    assert_eq!(package["result"]["resources"][0]["datastore_active"], true);
    server.cleanup().await;
}

/// (who, what they ask, the status, what a field shows): the access matrix of one
/// conditional dataset with personal fields, read through the real API.
async fn the_access_matrix(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let market = server
        .user(&admin, "market.owner", "market", "dept_admin")
        .await;
    let water = server
        .user(&admin, "water.owner", "water", "dept_admin")
        .await;
    let police = server
        .user(&admin, "police.owner", "police", "dept_admin")
        .await;
    let tax = server.user(&admin, "tax.owner", "tax", "dept_admin").await;
    let (status, _) = upload(
        &server,
        "/api/v1/data/datasets/market-entities/versions",
        &market,
        "text/csv",
        MARKET_CSV.into(),
    )
    .await;
    assert_eq!(status, 201);
    let rows = "/api/v1/data/datasets/market-entities/rows";

    // Core data is not listed to others; to the bureau it is, and cannot be requested.
    let until = (chrono::Utc::now() + chrono::Duration::days(180)).to_rfc3339();
    let request = |dataset: &str| {
        json!({"dataset": dataset, "purpose": "用水户核验", "legal_basis": "《青岛市公共数据管理办法》",
               "fields": ["credit_code", "name", "legal_person", "legal_person_id", "district"],
               "row_filter": {"district": ["市南区", "市北区"]}, "valid_until": until, "expected_rows": 100})
    };
    let (status, _) = post(
        &server,
        "/api/v1/data/requests",
        Some(&water),
        request("household-register"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, problem) = post(
        &server,
        "/api/v1/data/requests",
        Some(&admin),
        request("household-register"),
    )
    .await;
    assert_eq!(
        (status, problem["reason"].clone()),
        (403, json!("core")),
        "{problem}"
    );
    let (status, _) = post(
        &server,
        "/api/v1/data/requests",
        Some(&water),
        request("bus-routes"),
    )
    .await;
    assert_eq!(status, 422, "open data needs no request");

    // One grant per masking of legal_person_id, each to its own consumer department; the
    // owner narrows the rows to 市南区 with a reason.
    let mut grants = Vec::new();
    for (rule, token) in [("keep", &water), ("hash", &police), ("drop", &tax)] {
        let (status, filed) = post(
            &server,
            "/api/v1/data/requests",
            Some(token),
            request("market-entities"),
        )
        .await;
        assert_eq!(status, 201, "{filed}");
        let id = filed["id"].as_str().expect("id").to_owned();
        let (status, _) = post(
            &server,
            &format!("/api/v1/data/requests/{id}/decision"),
            Some(token),
            json!({"decision": "approve"}),
        )
        .await;
        assert_eq!(status, 403, "only the owner decides");
        let (status, narrowed) = post(
            &server,
            &format!("/api/v1/data/requests/{id}/decision"),
            Some(&market),
            json!({"decision": "approve", "row_filter": {"district": "崂山区"}, "reason": "x"}),
        )
        .await;
        assert_eq!(status, 422, "an approval only narrows: {narrowed}");
        let (status, approved) = post(
            &server,
            &format!("/api/v1/data/requests/{id}/decision"),
            Some(&market),
            json!({"decision": "approve", "row_filter": {"district": "市南区"}, "reason": "仅限市南区",
                   "masking": {"legal_person": "mask", "legal_person_id": rule, "name": "keep"}}),
        )
        .await;
        assert_eq!(
            (status, approved["status"].clone()),
            (200, json!("approved")),
            "{approved}"
        );
        grants.push(id);
    }
    // (token, query, status, field, expected value of the first record's field)
    type Case<'a> = (Option<&'a str>, &'a str, u16, &'a str, Option<Value>);
    let cases: Vec<Case> = vec![
        (
            Some(&market),
            "",
            200,
            "legal_person_id",
            Some(json!("370202199001011237")),
        ),
        (
            Some(&market),
            "",
            200,
            "registered_capital",
            Some(json!(100.5)),
        ),
        (
            Some(&water),
            "",
            200,
            "legal_person_id",
            Some(json!("370202199001011237")),
        ),
        (Some(&water), "", 200, "legal_person", Some(json!("张*"))),
        (Some(&water), "", 200, "registered_capital", None),
        (Some(&police), "", 200, "registered_capital", None),
        (Some(&tax), "", 200, "legal_person_id", None),
        (Some(&tax), "", 200, "name", Some(json!("青岛海信有限公司"))),
        (Some(&water), "?fields=registered_capital", 403, "", None),
        (
            Some(&water),
            "?filters=%7B%22district%22%3A%22%E5%B4%82%E5%B1%B1%E5%8C%BA%22%7D",
            403,
            "",
            None,
        ),
        (Some(&admin), "", 403, "", None),
        (None, "", 401, "", None),
    ];
    for (token, query, status, field, want) in &cases {
        let (got, body) = get(&server, &format!("{rows}{query}"), *token).await;
        assert_eq!(got, *status, "{query} {body}");
        if *status == 200 {
            let first = &body["records"][0];
            assert_eq!(
                first.get(*field).cloned(),
                want.clone(),
                "{field} in {body}"
            );
            if *token != Some(market.as_str()) {
                // The grant's rows only: 市南区.
                assert_eq!(body["total"], 2, "{body}");
            }
        }
    }
    // Hashes are per consumer: 16-byte hex, not the number, stable across reads.
    let (_, a) = get(&server, rows, Some(&police)).await;
    let (_, b) = get(&server, rows, Some(&police)).await;
    let hashed = a["records"][0]["legal_person_id"]
        .as_str()
        .expect("hashed")
        .to_owned();
    assert_eq!(hashed.len(), 24);
    assert_ne!(hashed, "370202199001011237");
    assert_eq!(b["records"][0]["legal_person_id"], json!(hashed));

    // Revocation closes access at once; an expired grant too.
    let (status, _) = post(
        &server,
        &format!("/api/v1/data/requests/{}/revoke", grants[0]),
        Some(&market),
        json!({"reason": "用途已完成"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, problem) = get(&server, rows, Some(&water)).await;
    assert_eq!(status, 403);
    assert!(
        problem["detail"].as_str().unwrap_or("").contains("revoked"),
        "{problem}"
    );
    let soon = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (_, filed) = post(
        &server,
        "/api/v1/data/requests",
        Some(&water),
        request("market-entities"),
    )
    .await;
    let id = filed["id"].as_str().expect("id").to_owned();
    let (status, approved) = post(
        &server,
        &format!("/api/v1/data/requests/{id}/decision"),
        Some(&market),
        json!({"decision": "approve", "valid_until": soon.to_rfc3339(), "reason": "两秒"}),
    )
    .await;
    assert_eq!(status, 200, "{approved}");
    let (status, _) = get(&server, rows, Some(&water)).await;
    assert_eq!(status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (status, problem) = get(&server, rows, Some(&water)).await;
    assert_eq!(status, 403);
    assert!(
        problem["detail"].as_str().unwrap_or("").contains("expired"),
        "{problem}"
    );

    // Every read, served or denied, is in the audit chain, and the chain verifies.
    let (_, audit) = get(&server, "/api/v1/audit?limit=1000", Some(&admin)).await;
    let actions: Vec<&str> = audit
        .as_array()
        .expect("audit")
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert!(actions.contains(&"data.read.grant"), "{actions:?}");
    assert!(actions.contains(&"data.read.owner"));
    assert!(actions.contains(&"data.read.denied"));
    assert!(actions.contains(&"data.request.approved"));
    let (_, verified) = get(&server, "/api/v1/audit/verify", Some(&admin)).await;
    assert_eq!(verified["ok"], true, "{verified}");
    let (status, monitoring) = get(&server, "/api/v1/data/monitoring", Some(&market)).await;
    assert_eq!(status, 200);
    let figures = monitoring["datasets"]
        .as_array()
        .expect("datasets")
        .iter()
        .find(|d| d["dataset"] == "market-entities")
        .cloned()
        .expect("figures");
    assert!(figures["reads"].as_i64().unwrap_or(0) >= 5, "{figures}");
    assert!(
        figures["denied_reads"].as_i64().unwrap_or(0) >= 4,
        "{figures}"
    );
    assert_eq!(figures["requests"], 4);
    server.cleanup().await;
}

/// A department API registered in the marketplace, called through the hub by a subscribed
/// app with its key, within its budget; the plan's 新接入场景 counts the app.
/// A department's own system on loopback, answering `app`; its base URL.
async fn department_system(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// Registers a department API in the marketplace as `token`'s department.
async fn register_api(
    server: &TestServer,
    token: &str,
    id: &str,
    title_zh: &str,
    upstream: &str,
    rate_per_minute: u32,
) {
    let (status, capability) = post(
        server,
        "/api/v1/data/capabilities",
        Some(token),
        json!({"id": id, "title_zh": title_zh, "title_en": id, "description_zh": title_zh,
               "upstream": upstream, "rate_per_minute": rate_per_minute}),
    )
    .await;
    assert_eq!(status, 201, "{capability}");
}

async fn marketplace_proxies_within_budget(backend: TestBackend) {
    let app = axum::Router::new().route(
        "/permits/{no}",
        axum::routing::get(
            |axum::extract::Path(no): axum::extract::Path<String>,
             headers: axum::http::HeaderMap| async move {
                axum::Json(json!({
                    "permit": no,
                    "client": headers.get("x-yunnao-client").and_then(|v| v.to_str().ok()).unwrap_or(""),
                    "department": headers.get("x-yunnao-department").and_then(|v| v.to_str().ok()).unwrap_or(""),
                }))
            },
        ),
    );
    let upstream_url = department_system(app).await;
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let ecology = server
        .user(&admin, "ecology.owner", "ecology", "dept_admin")
        .await;
    let water = server
        .user(&admin, "water.owner", "water", "dept_admin")
        .await;
    register_api(
        &server,
        &ecology,
        "permit-lookup",
        "排污许可查询",
        &upstream_url,
        2,
    )
    .await;
    let (_, listed) = get(&server, "/api/v1/data/capabilities", None).await;
    let listed = listed.as_array().expect("capabilities");
    assert!(listed.iter().any(|c| c["id"] == "grid-lookup"));
    assert!(
        listed.iter().all(|c| c.get("upstream").is_none()),
        "upstreams are not shown to the public"
    );
    let (status, created) = post(
        &server,
        "/api/v1/api-clients",
        Some(&water),
        json!({"name": "智慧水务", "department": "water", "scopes": ["datasets:read"]}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let client = created["client"]["id"].as_str().expect("id").to_owned();
    let key = created["api_key"].as_str().expect("key").to_owned();
    let call = "/api/v1/data/capabilities/permit-lookup/call?path=/permits/37020001";
    let (status, _) = get(&server, call, Some(&key)).await;
    assert_eq!(status, 403, "no subscription yet");
    let (status, subscription) = post(
        &server,
        "/api/v1/data/subscriptions",
        Some(&water),
        json!({"client_id": client, "capability": "permit-lookup"}),
    )
    .await;
    assert_eq!(status, 201, "{subscription}");
    let (status, _) = post(
        &server,
        "/api/v1/data/subscriptions",
        Some(&water),
        json!({"client_id": client, "dataset": "market-entities"}),
    )
    .await;
    assert_eq!(status, 403, "a conditional dataset takes a grant first");
    let (status, answer) = get(&server, call, Some(&key)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"permit": "37020001", "client": client, "department": "water"})
    );
    let (status, _) = get(&server, call, Some(&key)).await;
    assert_eq!(status, 200);
    let response = server.request(Method::GET, call, Some(&key), None).await;
    assert_eq!(response.status(), 429, "two calls a minute");
    assert!(response.headers().get("retry-after").is_some());
    let (status, _) = get(&server, call, Some(&water)).await;
    assert_eq!(status, 403, "capabilities are called with an app's key");
    let (_, plan) = get(&server, "/api/v1/plan/targets", Some(&admin)).await;
    let scenario = plan
        .as_array()
        .and_then(|targets| targets.iter().find(|t| t["item"] == 3))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(scenario["current"], 1.0, "{scenario}");
    server.cleanup().await;
}

/// Live views read their source at each request: the city information model's metro stations,
/// an air-quality device's readings, and a department's registered API, which is requested,
/// granted and masked as a table is.
async fn live_views_read_their_sources(backend: TestBackend) {
    let app = axum::Router::new().route(
        "/stations",
        axum::routing::get(|| async {
            axum::Json(json!({"records": [
                {"stationName": "团岛污水处理厂", "district": "市南区", "capacity": 10.0, "keeperPhone": "13812345678"},
                {"stationName": "海泊河污水处理厂", "district": "市北区", "capacity": 16.0, "keeperPhone": "13987654321"},
                {"stationName": "李村河污水处理厂", "district": "李沧区", "capacity": 25.0, "keeperPhone": "13700001111"}
            ]}))
        }),
    );
    let upstream_url = department_system(app).await;
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;

    // (b) The city information model: the 172 metro stations, filtered and sorted.
    let (status, rows) = get(
        &server,
        "/api/v1/data/datasets/metro-stations-live/rows?include_total=true&sort=name%20desc&limit=5",
        None,
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(rows["total"], json!(172), "{rows}");
    let records = rows["records"].as_array().expect("records");
    assert_eq!(records.len(), 5);
    assert!(
        records[0]["entity_id"]
            .as_str()
            .unwrap_or("")
            .starts_with("urn:ngsi-ld:TransportStation:"),
        "{rows}"
    );
    let names: Vec<&str> = records.iter().filter_map(|r| r["name"].as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(names, sorted, "sorted by name, descending");
    let one = records[0]["area_code"]
        .as_str()
        .expect("area code")
        .to_owned();
    let (_, filtered) = get(
        &server,
        &format!("/api/v1/data/datasets/metro-stations-live/rows?include_total=true&filters=%7B%22area_code%22:%22{one}%22%7D"),
        None,
    )
    .await;
    let filtered_total = filtered["total"].as_i64().expect("total");
    assert!((1..172).contains(&filtered_total), "{filtered}");
    assert!(
        filtered["records"]
            .as_array()
            .expect("records")
            .iter()
            .all(|r| r["area_code"] == json!(one))
    );
    let (status, _) = get(
        &server,
        "/api/3/action/datastore_search?resource_id=metro-stations-live&limit=2",
        None,
    )
    .await;
    assert_eq!(status, 200, "CKAN reads a live view too");

    // (b) A sensing profile's series: a reading is in the view as soon as it is acknowledged.
    let ecology = server
        .user(&admin, "ecology.live", "ecology", "dept_admin")
        .await;
    let response = server
        .request(
            Method::POST,
            "/api/v1/devices",
            Some(&ecology),
            Some(
                json!({"id": "aq-live-1", "name": "市南区监测站", "profile": "air-quality",
                        "department": "ecology", "location": {"lon": 120.38, "lat": 36.07}}),
            ),
        )
        .await;
    assert_eq!(response.status(), 201);
    let device: Value = response.json().await.expect("json");
    let device_token = device["access_token"].as_str().expect("token").to_owned();
    let sent = server
        .client
        .post(server.url(&format!("/api/v1/{device_token}/telemetry")))
        .header("content-type", "application/json")
        .body(r#"{"pm25": 35.5, "pm10": 60, "no2": 20, "o3": 80}"#)
        .send()
        .await
        .expect("sent");
    assert!(sent.status().is_success(), "{}", sent.status());
    let (status, series) = get(
        &server,
        "/api/v1/data/datasets/air-quality-realtime/rows?filters=%7B%22device_id%22:%22aq-live-1%22%7D",
        None,
    )
    .await;
    assert_eq!(status, 200, "{series}");
    assert_eq!(series["records"][0]["pm25"], json!(35.5), "{series}");
    assert_eq!(series["records"][0]["device_name"], json!("市南区监测站"));

    // (c) A registered department API, conditional, with a personal field masked by grant.
    let water = server
        .user(&admin, "water.live", "water", "dept_admin")
        .await;
    register_api(
        &server,
        &ecology,
        "sewage-plants",
        "污水处理厂接口",
        &upstream_url,
        60,
    )
    .await;
    let field = |name: &str, kind: &str, personal: &str, level: &str, attribute: &str| {
        json!({"name": name, "type": kind, "unit": null, "description_zh": name, "level": level,
               "personal": personal, "attribute": attribute})
    };
    let dataset = json!({
        "id": "sewage-plants-live", "department": "ecology", "title_zh": "污水处理厂(接口)", "title_en": "Sewage plants (API)",
        "description_zh": "部门接口的实时视图", "description_en": "", "themes": ["生态环保"], "keywords": [],
        "frequency": "realtime", "spatial": "青岛市", "temporal_start": null, "temporal_end": null,
        "source_system": "污水处理监管系统", "contact": "ecology", "licence": "政务数据共享协议",
        "level": "important", "sharing": "conditional",
        "fields": [
            field("station", "text", "none", "general", "stationName"),
            field("district", "text", "none", "general", "district"),
            field("capacity", "number", "none", "general", "capacity"),
            field("keeper_phone", "text", "personal", "important", "keeperPhone")
        ],
        "source": {"kind": "api", "capability": "sewage-plants", "path": "/stations"}
    });
    let (status, created) = post(&server, "/api/v1/data/datasets", Some(&ecology), dataset).await;
    assert_eq!(status, 201, "{created}");
    let rows = "/api/v1/data/datasets/sewage-plants-live/rows";
    let (status, owner) = get(&server, rows, Some(&ecology)).await;
    assert_eq!(status, 200, "{owner}");
    assert_eq!(owner["records"][0]["keeper_phone"], json!("13812345678"));
    let (status, _) = get(&server, rows, Some(&water)).await;
    assert_eq!(status, 403, "no grant yet");
    let (status, _) = upload(
        &server,
        "/api/v1/data/datasets/sewage-plants-live/versions",
        &ecology,
        "text/csv",
        b"station,district,capacity,keeper_phone\nx,y,1,13800000000\n".to_vec(),
    )
    .await;
    assert_eq!(status, 409, "a live view is not imported");
    let until = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let (status, filed) = post(
        &server,
        "/api/v1/data/requests",
        Some(&water),
        json!({"dataset": "sewage-plants-live", "purpose": "排水调度", "legal_basis": "《城镇排水与污水处理条例》",
               "fields": ["station", "district", "keeper_phone"], "row_filter": {},
               "valid_until": until, "expected_rows": 10}),
    )
    .await;
    assert_eq!(status, 201, "{filed}");
    let id = filed["id"].as_str().expect("id").to_owned();
    let (status, approved) = post(
        &server,
        &format!("/api/v1/data/requests/{id}/decision"),
        Some(&ecology),
        json!({"decision": "approve", "masking": {"keeper_phone": "mask"}}),
    )
    .await;
    assert_eq!(status, 200, "{approved}");
    let (status, granted) = get(
        &server,
        &format!("{rows}?sort=station&include_total=true"),
        Some(&water),
    )
    .await;
    assert_eq!(status, 200, "{granted}");
    assert_eq!(granted["total"], json!(3));
    let first = &granted["records"][0];
    assert_eq!(first["keeper_phone"], json!("138****5678"), "{granted}");
    assert!(first.get("capacity").is_none(), "not granted");
    let (status, problem) = get(&server, &format!("{rows}?fields=capacity"), Some(&water)).await;
    assert_eq!(
        (status, problem["reason"].clone()),
        (403, json!("outside-grant")),
        "{problem}"
    );
    server.cleanup().await;
}

backend_tests!(imports_are_whole_or_refused);
backend_tests!(the_access_matrix);
backend_tests!(marketplace_proxies_within_budget);
backend_tests!(live_views_read_their_sources);
