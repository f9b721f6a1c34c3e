//! Synthetic tables for the seeded datasets, made deterministically (the same rows on every
//! machine, from a generator seeded by the dataset's id): Qingdao's districts and streets,
//! valid ID numbers (check character and all), phones, coordinates inside the city. Each is
//! imported once, as version 1, through the importer like any department's file.

use crate::{Catalogue, Dataset, Field};
use yunnao_core::Problem;

const DISTRICTS: [(&str, &str, [&str; 3]); 10] = [
    (
        "370202",
        "市南区",
        ["香港中路街道", "八大关街道", "湛山街道"],
    ),
    (
        "370203",
        "市北区",
        ["台东街道", "辽宁路街道", "浮山新区街道"],
    ),
    ("370211", "黄岛区", ["长江路街道", "辛安街道", "灵珠山街道"]),
    ("370212", "崂山区", ["沙子口街道", "中韩街道", "金家岭街道"]),
    ("370213", "李沧区", ["李村街道", "虎山路街道", "九水街道"]),
    ("370214", "城阳区", ["城阳街道", "流亭街道", "夏庄街道"]),
    ("370215", "即墨区", ["通济街道", "环秀街道", "潮海街道"]),
    ("370281", "胶州市", ["阜安街道", "中云街道", "三里河街道"]),
    ("370283", "平度市", ["东阁街道", "李园街道", "同和街道"]),
    ("370285", "莱西市", ["水集街道", "望城街道", "沽河街道"]),
];
const ROADS: [&str; 12] = [
    "香港中路",
    "山东路",
    "延安三路",
    "宁夏路",
    "燕儿岛路",
    "辽阳西路",
    "黑龙江中路",
    "海尔路",
    "长江中路",
    "九水东路",
    "正阳路",
    "深圳路",
];
const SURNAMES: &str = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史";
const GIVEN: &str =
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英建华文辉玲婷雪梅鑫宇浩然子涵欣怡梓轩";

/// SplitMix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn char_of(&mut self, set: &str) -> char {
        let chars: Vec<char> = set.chars().collect();
        *self.pick(&chars)
    }
}

fn person(rng: &mut Rng) -> String {
    let mut name = String::new();
    name.push(rng.char_of(SURNAMES));
    name.push(rng.char_of(GIVEN));
    if rng.below(2) == 0 {
        name.push(rng.char_of(GIVEN));
    }
    name
}

fn id_number(rng: &mut Rng, district: &str, age_from: u64, age_span: u64) -> String {
    let year = 2024 - age_from - rng.below(age_span);
    let month = 1 + rng.below(12);
    let day = 1 + rng.below(28);
    let first = format!(
        "{district}{year:04}{month:02}{day:02}{:03}",
        rng.below(1000)
    );
    format!("{first}{}", crate::mask::id_check_char(&first))
}

fn date(rng: &mut Rng, from_year: i32, days: u64) -> String {
    let start = chrono::NaiveDate::from_ymd_opt(from_year, 1, 1).unwrap_or_default();
    (start + chrono::Duration::days(rng.below(days) as i64))
        .format("%Y-%m-%d")
        .to_string()
}

/// One value of `field` for row `i` of `dataset`.
fn value(rng: &mut Rng, dataset: &Dataset, field: &Field, i: usize) -> String {
    let (code, district, streets) = *rng.pick(&DISTRICTS);
    let name = field.name.as_str();
    let entity = |rng: &mut Rng, suffix: &str| {
        format!(
            "青岛{}{}{suffix}",
            rng.pick(&["海", "崂", "胶", "琴", "浮", "鳌", "黄", "汇"]),
            rng.pick(&["信", "达", "瑞", "丰", "盛", "通", "泰", "华", "源", "程"]),
        )
    };
    match (name, field.kind()) {
        (_, Some("id_number")) => {
            let (from, span) = if dataset.id.starts_with("elderly") {
                (60, 35)
            } else if dataset.id.starts_with("student") {
                (6, 12)
            } else {
                (18, 60)
            };
            id_number(rng, code, from, span)
        }
        (_, Some("phone")) => format!(
            "1{}{:09}",
            rng.pick(&["38", "39", "50", "58", "86", "35", "37"]),
            rng.below(1_000_000_000)
        )[..11]
            .to_owned(),
        (_, Some("name")) => person(rng),
        (_, Some("address")) => format!(
            "山东省青岛市{district}{}{}{}号",
            rng.pick(&streets),
            rng.pick(&ROADS),
            1 + rng.below(300)
        ),
        ("lon", _) => format!("{:.6}", 120.05 + rng.below(650_000) as f64 / 1_000_000.0),
        ("lat", _) => format!("{:.6}", 36.02 + rng.below(380_000) as f64 / 1_000_000.0),
        (_, Some("age")) => (60 + rng.below(38)).to_string(),
        ("district" | "community", _) if name == "community" => {
            format!(
                "{}{}社区",
                district,
                rng.pick(&streets).trim_end_matches("街道")
            )
        }
        ("district", _) => district.to_owned(),
        ("credit_code", _) => format!("913702{:012}", rng.below(1_000_000_000_000)),
        ("line", _) => format!("{}号线", rng.pick(&[1, 2, 3, 4, 8, 11, 13])),
        ("route", _) => format!("{}路", 1 + rng.below(400)),
        ("station" | "stop" | "spot" | "plant" | "section", _) => format!(
            "{}{}",
            rng.pick(&streets).trim_end_matches("街道"),
            match name {
                "spot" => "景区",
                "plant" => "水厂",
                "section" => "断面",
                _ => "站",
            }
        ),
        ("grade", _) => rng
            .pick(&["三级甲等", "三级乙等", "二级甲等", "一级", "未定级"])
            .to_string(),
        ("stage", _) => rng
            .pick(&["小学", "初中", "高中", "九年一贯制"])
            .to_string(),
        ("rating", _) => rng.pick(&["A", "A", "B", "M", "C", "D"]).to_string(),
        ("class", _) => rng.pick(&["I类", "II类", "III类", "IV类"]).to_string(),
        ("kind", _) => rng
            .pick(&["养老保险", "医疗保险", "失业保险", "工伤保险"])
            .to_string(),
        ("tax_kind", _) => rng
            .pick(&["增值税", "企业所得税", "个人所得税", "印花税"])
            .to_string(),
        ("star", _) => rng.pick(&["五星", "四星", "三星", "未评星"]).to_string(),
        ("diagnosis", _) => rng
            .pick(&[
                "上呼吸道感染",
                "高血压",
                "2型糖尿病",
                "胃炎",
                "腰椎间盘突出",
            ])
            .to_string(),
        ("fee", _) => format!("首小时{}元", 2 + rng.below(8)),
        ("hours" | "salary", _) if name == "salary" => {
            let low = 3 + rng.below(10);
            format!("{low}-{}千元", low + 2 + rng.below(5))
        }
        ("hours", _) => rng
            .pick(&["08:00-17:00", "09:00-21:00", "全天"])
            .to_string(),
        ("sports", _) => rng
            .pick(&["游泳", "篮球", "羽毛球", "足球", "健身"])
            .to_string(),
        ("title", _) => rng
            .pick(&["软件工程师", "护士", "教师", "销售代表", "焊工"])
            .to_string(),
        ("hazard", _) => rng
            .pick(&["液氨储罐", "液化石油气", "氯气", "苯"])
            .to_string(),
        ("department", _) => rng
            .pick(&["市教育局", "市卫生健康委", "市交通运输局", "市民政局"])
            .to_string(),
        ("visit_id", _) => format!("MZ{:010}", i + 1),
        ("permit_no" | "permit" | "code", _) => format!("3702{:08}", rng.below(100_000_000)),
        (
            "name" | "unit" | "employer" | "developer" | "applicant" | "institution" | "school"
            | "project",
            _,
        ) => {
            let suffix = match (dataset.id.as_str(), name) {
                ("schools", _) | (_, "school") => "学校",
                ("medical-institutions", _) | (_, "institution") => "医院",
                ("hotels", _) => "酒店",
                ("parking-lots", _) => "停车场",
                ("vaccination-points", _) => "接种点",
                ("insured-pharmacies", _) => "大药房",
                ("elderly-care-institutions", _) => "养老院",
                ("sports-venues", _) => "体育馆",
                ("emergency-shelters", _) => "应急避难场所",
                (_, "project") => "项目",
                _ => "有限公司",
            };
            format!("{}{}", entity(rng, suffix), i + 1)
        }
        _ => match field.field_type.as_str() {
            "integer" => match name {
                "year" => (2019 + rng.below(6)).to_string(),
                "sequence" => (1 + i % 30).to_string(),
                "aqi" => (20 + rng.below(180)).to_string(),
                _ => (1 + rng.below(2000)).to_string(),
            },
            "number" => format!("{:.2}", rng.below(1_000_000) as f64 / 100.0),
            "date" => date(rng, 2019, 6 * 365),
            "timestamp" => format!("{} 08:{:02}:00", date(rng, 2023, 700), rng.below(60)),
            "boolean" => (rng.below(2) == 0).to_string(),
            _ => format!("{}{}", field.description_zh, 1 + rng.below(500)),
        },
    }
}

/// Rows for a seeded dataset: a few thousand for the large registers, hundreds for the rest.
fn row_count(dataset: &Dataset) -> usize {
    match dataset.id.as_str() {
        "market-entities" | "outpatient-visits" | "social-insurance" | "tax-payments" => 5_000,
        "bus-routes" | "air-quality-daily" | "insurance-settlements" | "elderly-allowances" => {
            2_000
        }
        _ => 300,
    }
}

/// The CSV of a seeded dataset's table.
pub fn csv_of(dataset: &Dataset) -> Result<Vec<u8>, Problem> {
    let mut rng = Rng(u64::from_be_bytes(
        yunnao_gm::sm3(dataset.id.as_bytes())[..8]
            .try_into()
            .unwrap_or([7; 8]),
    ));
    let mut writer = csv::Writer::from_writer(Vec::new());
    let failed = |e: csv::Error| Problem::internal(format!("seed table: {e}"));
    writer
        .write_record(dataset.fields.iter().map(|f| f.name.as_str()))
        .map_err(failed)?;
    for i in 0..row_count(dataset) {
        let row: Vec<String> = dataset
            .fields
            .iter()
            .map(|f| value(&mut rng, dataset, f, i))
            .collect();
        writer.write_record(&row).map_err(failed)?;
    }
    writer
        .into_inner()
        .map_err(|e| Problem::internal(format!("seed table: {e}")))
}

impl Catalogue {
    /// Imports the synthetic table of every seeded dataset that has no data yet.
    pub async fn seed_tables(&self) -> Result<usize, Problem> {
        let mut imported = 0;
        let seeded = crate::seeded_datasets()?;
        for entry in self.listed_all() {
            if !seeded.iter().any(|d| d.id == entry.dataset.id)
                || entry.dataset.source.is_live()
                || self.current_version(&entry.dataset.id).is_some()
            {
                continue;
            }
            let bytes = csv_of(&entry.dataset)?;
            let file = tempfile::Builder::new()
                .prefix("yunnao-seed-")
                .tempfile()
                .map_err(|e| Problem::internal(format!("seed table: {e}")))?;
            std::fs::write(file.path(), &bytes)
                .map_err(|e| Problem::internal(format!("seed table: {e}")))?;
            match self
                .import_file(
                    &entry.dataset,
                    "system:seed",
                    file.path().to_path_buf(),
                    crate::import::Format::Csv,
                    None,
                )
                .await
            {
                Ok(_) => imported += 1,
                // Another node seeded it first.
                Err(p) if p.status == 409 => {}
                Err(p) => return Err(p),
            }
        }
        Ok(imported)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeded_tables_are_deterministic_and_import_cleanly() {
        let seed: serde_json::Value =
            serde_json::from_str(include_str!("../data/datasets.json")).expect("seed");
        let datasets: Vec<crate::Dataset> =
            serde_json::from_value(seed["datasets"].clone()).expect("datasets");
        for d in datasets.iter().filter(|d| !d.source.is_live()) {
            let a = super::csv_of(d).expect("csv");
            assert_eq!(a, super::csv_of(d).expect("csv"), "{}", d.id);
            let file = tempfile::NamedTempFile::new().expect("temp");
            std::fs::write(file.path(), &a).expect("write");
            let checked = crate::import::check(file.path(), crate::import::Format::Csv, None, d)
                .expect("check");
            assert_eq!(checked.error_count, 0, "{}: {:?}", d.id, checked.errors);
            if d.fields.iter().any(|f| f.kind() == Some("id_number")) {
                assert_eq!(checked.quality.validity, 1.0, "{}", d.id);
            }
        }
    }
}
