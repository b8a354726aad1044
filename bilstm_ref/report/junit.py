"""``junit.xml``: one test case per matrix case or fixture, for CI systems.

pass and known-deviation are passes (a known deviation says why in ``system-out``); fail is a
``failure`` with every failing output; error and integrity are ``error``; an expected failure is
``skipped`` with its reason; an unexpected pass is a pass with a note.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .data import ReportData
from .markdown import _output_line


def render_junit(data: ReportData) -> str:
    c = data.counts()
    suite = ET.Element("testsuite", {
        "name": "bilstm_ref conformance",
        "tests": str(c["total"]),
        "failures": str(c["fail"]),
        "errors": str(c["error"] + c["integrity"]),
        "skipped": str(c["xfail"]),
        "time": f"{data.meta['wall_seconds']:.3f}",
        "timestamp": data.meta["generated"],
    })
    props = ET.SubElement(suite, "properties")
    for key in ("implementation", "source", "backend", "bilstm_ref"):
        ET.SubElement(props, "property", {"name": key, "value": str(data.meta.get(key))})
    for k, v in data.meta["versions"].items():
        ET.SubElement(props, "property", {"name": f"version.{k}", "value": str(v)})
    for r in data.records:
        family = str(r["flags"].get("family", "fixture"))
        case = ET.SubElement(suite, "testcase", {"classname": f"bilstm_ref.{family}", "name": r["id"]})
        detail = "\n".join(_output_line(o) for o in r["outputs"] if not o["ok"])
        if r["status"] == "fail":
            first = next((o["name"] for o in r["outputs"] if not o["ok"]), "?")
            el = ET.SubElement(case, "failure", {"message": f"{len(r['failing_outputs'])} output(s) differ from "
                                                            f"Keras, first {first}", "type": "mismatch"})
            el.text = (f"diagnosis: {r['diagnosis']}\n" if r.get("diagnosis") else "") + detail
        elif r["status"] in ("error", "integrity"):
            el = ET.SubElement(case, "error", {"message": r["message"][:500], "type": r["status"]})
            el.text = r["message"]
        elif r["status"] == "xfail":
            ET.SubElement(case, "skipped", {"message": r["message"][:500], "type": "xfail"})
        elif r["status"] in ("known-deviation", "xpass"):
            out = ET.SubElement(case, "system-out")
            out.text = f"{r['status']}: {r['deviation'] or ''} {r['message']}".strip()
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
