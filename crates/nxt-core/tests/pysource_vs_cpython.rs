//! The tokenizer-based statement splitter (`nxt_core::pysource`) against CPython's own parser:
//! for every source of a corpus, the top-level statements must span exactly the lines that
//! `ast.parse` gives its module body (statements sharing a line, `a; b`, count as one). The
//! corpus: hand-written sources with brackets, `#`, triple quotes, f-strings (nested fields,
//! same-quote nesting where the interpreter accepts it), continuations and clauses; plus, when
//! the benchmark data is present, every HumanEvalFix and MBPP program and test.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use nxt_core::pysource::top_level_statements;

const SCRIPT: &str = r#"
import ast, json, sys
out = []
for src in json.load(sys.stdin):
    try:
        tree = ast.parse(src)
    except SyntaxError:
        out.append(None)
        continue
    spans = []
    for node in tree.body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
        last = node.end_lineno - 1
        if spans and first <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], last)
        else:
            spans.append([first, last])
    out.append(spans)
json.dump(out, sys.stdout)
"#;

/// CPython's statement spans of each source (None: CPython rejects it).
fn cpython_spans(sources: &[String]) -> Vec<Option<Vec<(usize, usize)>>> {
    let python = nxt_sandbox::find_python().expect("no CPython found");
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(sources).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    let v: Vec<Option<Vec<(usize, usize)>>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), sources.len());
    v
}

fn compare(sources: &[String]) -> usize {
    let expected = cpython_spans(sources);
    let mut compared = 0;
    for (src, want) in sources.iter().zip(expected) {
        let Some(want) = want else { continue };
        let got: Vec<(usize, usize)> = top_level_statements(src)
            .iter()
            .map(|s| (s.first, s.last))
            .collect();
        assert_eq!(got, want, "statement spans differ for:\n{src}");
        compared += 1;
    }
    compared
}

#[test]
fn tricky_sources_split_as_cpython_parses_them() {
    let sources: Vec<String> = [
        "assert f(')') == 1\nassert f('(') == 2\nassert g(\"#\") == 3\n",
        "x = '[' ; y = '{'\nassert h(x) == ']'\n",
        "s = '''a\n)\nb'''\nt = \"\"\"\n# no comment\n(\"\"\"\nassert s\n",
        "assert f\"{x['(']}\" == '1'\nassert f'{d[\"a\"]:>{w}}' == ' 1'\nz = 1\n",
        "assert f'{{(' == '{('\nassert rb'\\'(' == b\"'(\"\nq = 2\n",
        "v = F'''{\n  1 + (2)\n}'''\nw = 3\n",
        "x = (1,  # a ) in a comment\n     2)\ny = 1 + \\\n    2\n# (\nz = 3\n",
        "if x:\n    pass\n# c\nelse:\n    pass\n@dec(')')\n@other\ndef g():\n\n    return '('\n",
        "try:\n    pass\nexcept E:\n    pass\nfinally:\n    pass\nelse_ = 1\n",
        "def f(a, b=')'):\n    \"\"\"Doc with ( and # and '''.\"\"\"\n    return [a,\n            b]\n\n\nclass C:\n    x = {'}': 1}\n",
        "for i in range(3):\n    print(f\"{i!r:>{4}} #\")\nelse:\n    print('(')\nwhile False:\n    pass\n",
        "import os\nfrom x import (a,\n    b)\nlambda: (\n1)\n",
        "a = 1; b = '('\nc = [\n'\\\\'  # ]\n]\n",
        "match = 1\nprint(match)\n",
        "with open(p) as f, \\\n     open(q) as g:\n    pass\nasync def h():\n    await x\n",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let n = compare(&sources);
    assert_eq!(n, sources.len(), "CPython rejected a corpus source");
}

#[test]
fn benchmark_programs_and_tests_split_as_cpython_parses_them() {
    let Some(dir) = common::data_dir() else {
        return;
    };
    let mut sources = Vec::new();
    for bench in ["hefix", "mbpp"] {
        let tasks = nxt_data::load_benchmark(bench, &dir).unwrap();
        for t in tasks {
            sources.push(t.buggy_program.clone());
            if let Some(r) = &t.reference {
                sources.push(r.clone());
            }
            sources.push(t.prompt_tests.tests.join("\n") + "\n");
            if let Some(s) = &t.prompt_tests.setup {
                sources.push(s.clone());
            }
        }
    }
    let n = compare(&sources);
    eprintln!("{n} of {} sources compared with CPython", sources.len());
    assert!(n > 1000, "only {n} sources compared");
}
