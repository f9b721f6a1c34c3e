#!/usr/bin/env python3
"""Writes data/plan/digital-qingdao-2022.zh-Hans.json: the plan with every Chinese string in
Simplified characters and mainland wording (OpenCC t2s and the table below), which the web UI shows. The source
file keeps the text as published. Needs `pip install opencc-python-reimplemented`."""
import json
import pathlib

from opencc import OpenCC

ROOT = pathlib.Path(__file__).resolve().parent.parent / "data" / "plan"
opencc = OpenCC("t2s")
# The source's Taiwan-style wording (its notes list the main ones) back to the mainland terms
# of the published plan; tw2sp is not used because it also turns 智慧 into 智能. Order matters.
MAINLAND = [
    ("人工智慧", "人工智能"),
    ("智慧型", "智能"),
    ("数位", "数字"),
    ("网际网路", "互联网"),
    ("网路", "网络"),
    ("资料库", "数据库"),
    ("最佳化", "优化"),
    ("积体电路", "集成电路"),
    ("感测器", "传感器"),
    ("软体", "软件"),
    ("晶片", "芯片"),
    ("模组", "模块"),
    ("连线埠", "连接端口"),
    ("视窗端", "窗口端"),
    ("宽频", "宽带"),
    ("著力", "着力"),
    ("登入站", "登陆站"),
    ("套用", "应用"),
    ("格线", "网格"),
    ("捷运", "地铁"),
]


def convert(text):
    text = opencc.convert(text)
    for taiwan, mainland in MAINLAND:
        text = text.replace(taiwan, mainland)
    return text


def simplify(value):
    if isinstance(value, str):
        return convert(value)
    if isinstance(value, list):
        return [simplify(v) for v in value]
    if isinstance(value, dict):
        return {k: simplify(v) for k, v in value.items()}
    return value


plan = json.loads((ROOT / "digital-qingdao-2022.json").read_text(encoding="utf-8"))
out = simplify(plan)
(ROOT / "digital-qingdao-2022.zh-Hans.json").write_text(
    json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
)
