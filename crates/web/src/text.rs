//! The UI's words, Simplified Chinese first.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    pub fn html(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }
}

/// (key, Chinese, English)
const WORDS: &[(&str, &str, &str)] = &[
    ("brand", "云脑", "yunnao"),
    (
        "tagline",
        "青岛城市运行一网统管平台",
        "Qingdao city operations platform",
    ),
    ("overview", "一屏总览", "City overview"),
    ("sign_in", "登录", "Sign in"),
    ("workbench", "案件工作台", "Case workbench"),
    ("plan", "督导考核", "Plan supervision"),
    ("services", "政务服务", "Services"),
    ("services_hall", "网上办事", "Apply online"),
    ("my_code", "我的码", "My code"),
    ("codes", "一码通城", "One code"),
    ("data", "数据中枢", "Data hub"),
    ("codes_live", "一码通城在用场景", "One-code scenarios live"),
    ("codes_today", "今日扫码核验", "scans today"),
    ("devices", "感知设备", "Devices"),
    ("devices_title", "感知设备", "Devices"),
    ("all_profiles", "全部类型", "All profiles"),
    ("filter", "筛选", "Filter"),
    ("col_name", "名称", "Name"),
    ("col_profile", "类型", "Profile"),
    ("col_seen", "最近上报", "Last seen"),
    ("yes", "是", "yes"),
    ("no", "否", "no"),
    ("offline", "离线", "offline"),
    ("simulated_short", "模拟", "simulated"),
    ("next_page", "下一页", "Next page"),
    (
        "last24",
        "读数（线为均值，色带为每段的最小至最大值）",
        "Readings (the line is the mean, the band each interval's minimum to maximum)",
    ),
    ("range_1h", "1 小时", "1 hour"),
    ("range_24h", "24 小时", "24 hours"),
    ("range_7d", "7 天", "7 days"),
    ("range_30d", "30 天", "30 days"),
    ("latest", "最新", "Latest"),
    ("alarms_title", "告警", "Alarms"),
    ("alarms", "告警", "Alarms"),
    ("alarm_open", "未解除", "Not cleared"),
    ("alarm_active", "未确认", "Not acknowledged"),
    ("alarm_acknowledged", "已确认", "Acknowledged"),
    ("alarm_cleared", "已解除", "Cleared"),
    ("alarm_all", "全部", "All"),
    ("alarm_ack", "确认", "Acknowledge"),
    ("alarm_clear", "解除", "Clear"),
    ("all_severities", "全部级别", "All severities"),
    ("all_departments", "全部部门", "All departments"),
    ("all_districts", "全部区（市）", "All districts"),
    ("col_raised", "发生时间", "Raised"),
    ("col_device", "设备", "Device"),
    ("col_device_id", "设备编号", "Device ID"),
    ("col_alarm", "告警内容", "Alarm"),
    ("col_case", "案件", "Case"),
    ("col_id", "编号", "ID"),
    ("open_case", "查看案件", "Open the case"),
    ("none_found", "没有符合条件的记录", "Nothing matches"),
    ("export_csv", "导出 CSV", "Export CSV"),
    ("search", "搜索", "Search"),
    ("system", "系统", "System"),
    (
        "auto",
        "自动（条件已消失）",
        "automatically (the condition ended)",
    ),
    ("resident_label", "市民", "Resident"),
    ("enterprise_label", "企业", "Enterprise"),
    ("choose", "请选择", "Choose"),
    ("where", "位置", "Where"),
    ("locate", "使用当前位置", "Use my location"),
    ("located", "已定位", "Located"),
    ("locating", "正在定位…", "Locating…"),
    (
        "no_location",
        "无法定位，请填写经纬度",
        "No location: type longitude and latitude",
    ),
    ("lon", "经度", "Longitude"),
    ("lat", "纬度", "Latitude"),
    ("photo", "照片", "Photo"),
    ("submit_report", "提交上报", "Send the report"),
    (
        "no_reports",
        "您还没有上报过问题",
        "You have not reported anything yet",
    ),
    (
        "report_received",
        "已受理，案件编号",
        "Received; case number",
    ),
    (
        "services_soon",
        "一网通办的服务事项将在此处办理。",
        "The services hub's applications will be here.",
    ),
    ("my_reports", "我的上报", "My reports"),
    ("report_new", "随手拍", "Report a problem"),
    ("report_patrol", "巡查上报", "Patrol report"),
    ("legend_open", "未结案件数", "Open cases"),
    ("api_clients", "接入应用", "Applications connected"),
    (
        "kpi_title",
        "城运指标与排名",
        "Operations rates and rankings",
    ),
    ("period", "统计周期", "Period"),
    ("period_1", "24 小时", "24 hours"),
    ("period_7", "7 天", "7 days"),
    ("period_30", "30 天", "30 days"),
    ("on_time", "按期结案率", "Closed on time"),
    ("rework", "返工率", "Rework rate"),
    ("closed_period", "期内结案", "Closed in period"),
    ("satisfaction", "满意度", "Satisfaction"),
    ("rank_districts", "区（市）排名", "Districts ranked"),
    ("rank_departments", "部门排名", "Departments ranked"),
    ("col_open", "未结", "Open"),
    (
        "starting",
        "模拟城市启动中：已接入 {n} / {total} 台设备，各项数字随接入增长",
        "The simulated city is starting: {n} of {total} devices connected; the figures grow as they join",
    ),
    ("notices", "通知", "Notifications"),
    (
        "search_hint",
        "搜索设备、案件、督导事项",
        "Search devices, cases, plan",
    ),
    ("state_open", "未结案件", "Open cases"),
    ("sort", "排序", "Sort"),
    ("sort_due", "按处置时限", "By time limit"),
    ("sort_created", "按上报时间", "Newest first"),
    ("only_overdue", "只看超期", "Overdue only"),
    ("flag_overdue", "超期", "Overdue"),
    ("flag_due_soon", "临期", "Nearly due"),
    ("overdue_means", "已过处置时限", "past its time limit"),
    (
        "due_soon_means",
        "已用时限八成以上",
        "over 80% of its time used",
    ),
    ("col_grid", "单元网格", "Unit grid"),
    ("col_created", "上报时间", "Reported"),
    ("col_address", "地址", "Address"),
    ("export_xlsx", "导出 Excel", "Export Excel"),
    ("targets", "目标", "Targets"),
    ("live", "实时计量", "measured live"),
    (
        "plan_title",
        "数字青岛2022年行动方案 · 目标进度",
        "Digital Qingdao 2022 Action Plan · targets",
    ),
    (
        "plan_note",
        "实时目标由平台直接计量（演示环境中含模拟设备）；其余目标取责任单位报送的最新进展，须加盖本单位电子印章并验章通过方予采信。目标按年度计，进度与当年时间进度比较：达到目标为已达标，不低于时间进度为推进中，不低于其八成为有风险，否则为滞后。",
        "Live targets are measured by the platform (the demo's include simulated devices); the others take the newest progress report of a responsible unit, accepted only when its e-seal verifies. Targets are annual and progress is compared with the share of the year gone by: at the target is met, at or above that share on track, at or above 80% of it at risk, otherwise behind.",
    ),
    ("col_item", "事项", "Item"),
    ("col_units", "责任单位", "Responsible units"),
    ("col_metric", "指标", "Metric"),
    ("col_target", "目标", "Target"),
    ("col_current", "当前值", "Current"),
    ("col_source", "来源", "Source"),
    ("col_status", "状态", "Status"),
    ("status_met", "已达标", "Met"),
    ("status_on_track", "推进中", "On track"),
    ("status_behind", "滞后", "Behind"),
    ("status_at_risk", "有风险", "At risk"),
    ("reported", "责任单位报送", "reported"),
    ("reported_by", "报送:", "reported by"),
    ("seal_verified", "电子印章已验证 ✓", "e-seal verified ✓"),
    (
        "awaiting_source",
        "待责任单位报送",
        "awaiting a progress report",
    ),
    ("report_submit", "报送进展", "Report progress"),
    ("report_value", "数值", "Value"),
    ("report_as_of", "截至日期", "As of"),
    ("report_evidence", "佐证材料", "Evidence"),
    (
        "report_seal_submit",
        "加盖电子印章并报送",
        "Seal and submit",
    ),
    ("parking", "泊位占用率 %", "Parking occupancy %"),
    (
        "daily",
        "近7日各区（市）案件数",
        "Cases reported per day by district (7 days)",
    ),
    ("grid_title", "单元网格", "Unit grids"),
    ("back_to_city", "返回全市", "Back to the city"),
    ("rules_title", "告警规则", "Alarm rules"),
    ("col_rule", "规则", "Rule"),
    ("col_severity", "级别", "Severity"),
    ("status_awaiting", "待报送", "Awaiting report"),
    ("queue", "待办案件", "Open cases"),
    ("col_service", "类别", "Category"),
    ("col_state", "状态", "State"),
    ("col_district", "区（市）", "District"),
    ("col_department", "处置部门", "Department"),
    ("col_due", "处置时限", "Due"),
    ("col_description", "描述", "Description"),
    ("timeline", "办理过程", "Timeline"),
    ("steps", "办理", "Act"),
    ("comment", "办理意见（必填）", "Comment (required)"),
    ("sign_out", "退出", "Sign out"),
    (
        "time_zone",
        "北京时间 (UTC+8)",
        "China Standard Time (UTC+8)",
    ),
    (
        "no_steps",
        "您在此状态下没有可执行的步骤",
        "There is no step you may take on this case now",
    ),
    ("back", "返回", "Back"),
    ("refused_400", "请求有误", "The request is not right"),
    ("refused_401", "请先登录", "Please sign in first"),
    ("refused_403", "您无权执行此操作", "You may not do this"),
    (
        "refused_404",
        "未找到，或您无权查看",
        "Not found, or not yours to see",
    ),
    (
        "refused_409",
        "案件状态已变化，此步骤不能执行，请刷新后重试",
        "The case has moved on; this step is no longer possible. Reload and try again",
    ),
    (
        "refused_422",
        "填写的内容有误",
        "Something in the form is not right",
    ),
    ("refused_other", "操作未能完成", "That did not work"),
    ("username", "用户名", "Username"),
    ("password", "密码", "Password"),
    (
        "wrong_password",
        "用户名或密码错误",
        "Wrong username or password",
    ),
    (
        "bad_form",
        "请填写用户名和密码",
        "Fill in username and password",
    ),
    ("online", "在线设备", "Devices online"),
    ("col_online", "在线", "Online"),
    ("devices", "接入设备", "Devices connected"),
    ("readings_per_s", "每秒读数", "Readings per second"),
    ("alarms_critical", "严重告警", "Critical alarms"),
    ("alarms_major", "重要告警", "Major alarms"),
    ("incidents_open", "未结案件", "Open cases"),
    ("incidents_overdue", "超期案件", "Overdue cases"),
    ("closed_today", "今日结案", "Closed today"),
    ("grid_coverage", "网格覆盖率 %", "Grid coverage %"),
    ("grid_staffed", "网格员配备率 %", "Grids staffed %"),
    (
        "spark",
        "每秒读数（近一小时）",
        "Readings per second (last hour)",
    ),
    ("simulated", "其中模拟设备", "of which simulated"),
    ("ticker", "最新动态", "Latest events"),
    (
        "legend",
        "彩色线为地铁线路；点击区（市）或按 Enter 查看其单元网格",
        "coloured lines are metro lines; click a district (or press Enter) for its unit grids",
    ),
];

pub fn t(lang: Lang, key: &str) -> &'static str {
    WORDS
        .iter()
        .find(|(k, ..)| *k == key)
        .map(|(_, zh, en)| if lang == Lang::Zh { *zh } else { *en })
        .unwrap_or("")
}

/// A reading key by its name in words (`precipitation` → 雨量); a key not known keeps its code.
pub fn key_name(lang: Lang, key: &str) -> String {
    const KEYS: &[(&str, &str, &str)] = &[
        ("precipitation", "雨量", "rainfall"),
        ("height", "水位", "water level"),
        ("flow", "流量", "flow"),
        ("pH", "pH 值", "pH"),
        ("temperature", "水温", "water temperature"),
        ("turbidity", "浊度", "turbidity"),
        ("O2", "溶解氧", "dissolved oxygen"),
        ("pressure", "管网压力", "pipe pressure"),
        ("CH4", "甲烷", "methane"),
        ("H2S", "硫化氢", "hydrogen sulphide"),
        ("CO", "一氧化碳", "carbon monoxide"),
        ("occupied", "占用", "occupied"),
        ("availableCapacity", "空闲充电口", "free connectors"),
        ("power", "充电功率", "charging power"),
        ("pm25", "PM2.5", "PM2.5"),
        ("pm10", "PM10", "PM10"),
        ("no2", "二氧化氮", "NO₂"),
        ("o3", "臭氧", "ozone"),
        ("powerState", "开关状态", "power state"),
        ("illuminanceLevel", "照度", "illuminance"),
        ("powerConsumption", "功耗", "power consumption"),
    ];
    KEYS.iter()
        .find(|(k, ..)| *k == key)
        .map(|(_, zh, en)| if lang == Lang::Zh { *zh } else { *en }.to_owned())
        .unwrap_or_else(|| key.to_owned())
}

/// A severity by its name in the page's language.
pub fn severity_name(lang: Lang, severity: &str) -> &'static str {
    match (lang, severity) {
        (Lang::Zh, s) => severity_zh(s),
        (Lang::En, "critical") => "critical",
        (Lang::En, "major") => "major",
        (Lang::En, "minor") => "minor",
        (Lang::En, _) => "warning",
    }
}

pub fn severity_zh(severity: &str) -> &'static str {
    match severity {
        "critical" => "严重",
        "major" => "重要",
        "minor" => "次要",
        _ => "提示",
    }
}

/// A line of a case's history or of the event list by what happened: a workflow step by the
/// workflow's own name for it, or what the system did.
pub fn event_name(lang: Lang, action: &str) -> &'static str {
    if let Ok(step) = yunnao_governance::workflow::Action::parse(action) {
        return if lang == Lang::Zh {
            step.name_zh()
        } else {
            step.name_en()
        };
    }
    let (zh, en) = match action {
        "report" => ("上报", "Reported"),
        "warning" => ("时限预警", "Deadline warning"),
        "overdue" => ("超期督办", "Overdue, escalated"),
        "alarm_cleared" => ("告警解除", "Alarm cleared"),
        _ => ("更新", "Updated"),
    };
    if lang == Lang::Zh { zh } else { en }
}

/// A state by its name in the page's language.
pub fn state_name(lang: Lang, state: yunnao_governance::workflow::State) -> &'static str {
    if lang == Lang::Zh {
        state.name_zh()
    } else {
        state.name_en()
    }
}
