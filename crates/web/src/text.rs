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
        "区（市）颜色按未结案件数；彩色线为地铁线路；点击区（市）查看其单元网格",
        "Districts coloured by open cases; coloured lines are metro lines; click a district for its unit grids",
    ),
];

pub fn t(lang: Lang, key: &str) -> &'static str {
    WORDS
        .iter()
        .find(|(k, ..)| *k == key)
        .map(|(_, zh, en)| if lang == Lang::Zh { *zh } else { *en })
        .unwrap_or("")
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
