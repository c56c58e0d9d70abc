#!/usr/bin/env bash
# The man pages in docs/man against the programs they describe:
#  - every option a program's usage text prints, and every option its parser accepts (the
#    "--x" literals and getopt_long rows of its source), is in the OPTIONS or COMMANDS
#    section of its page; each scepctl command of the usage texts has an entry in
#    scepctl(8) holding that command's options;
#  - no page documents an option or a command the program does not have;
#  - every key of the key table in engine/common/config_keys.c is in scepd.conf(5) under its
#    section, with the default docs/configuration.md gives, and the page has no other key;
#  - man --warnings and groff -ww report nothing.
set -euo pipefail
SRC=${SCEPD_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SCEPD_BUILD:-$SRC/build}
T=$(mktemp -d /tmp/scepd-man.XXXXXX)
trap 'rm -rf "$T"' EXIT

for b in scepd scepctl scep-loadgen; do
  [ -x "$BUILD/$b" ] || { echo "FAIL - $BUILD/$b is not built"; exit 1; }
done

# The usage texts, as each binary prints them: scepd and scepctl on a bad command line
# (exit 2), the ca/ra group of scepctl when its command is missing (this needs a
# configuration that loads: an empty file is one), scep-loadgen on --help (exit 0).
rc=0; "$BUILD/scepd" --help >"$T/scepd.usage" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL - scepd --help exited $rc, not 2"; exit 1; }
: >"$T/empty.conf"
rc=0; "$BUILD/scepctl" >"$T/scepctl.usage" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL - scepctl without arguments exited $rc, not 2"; exit 1; }
rc=0; "$BUILD/scepctl" -c "$T/empty.conf" ca >>"$T/scepctl.usage" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL - scepctl ca exited $rc, not 2"; exit 1; }
"$BUILD/scep-loadgen" --help >"$T/scep-loadgen.usage"

py_rc=0
python3 - "$SRC" "$T" <<'PY' || py_rc=$?
import re, sys
src, tmp = sys.argv[1], sys.argv[2]
passed = failed = 0

def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL - " + what)

OPT = re.compile(r'(?<![\w-])(--?[A-Za-z][\w-]*)')

def opts(text):
    return set(OPT.findall(text))

def plain(line):
    """One roff source line as text: escapes resolved, fonts and quotes dropped."""
    line = re.sub(r'^\.(B|I|BR|RB|BI|IB|IR|RI|SM|SB)\s+', '', line)
    for a, b in (('\\-', '-'), ('\\(mu', 'x'), ('\\(dq', '"'), ('\\e', '\\'), ('\\&', ''),
                 ('\\%', ''), ('\\ ', ' ')):
        line = line.replace(a, b)
    line = re.sub(r'\\f[BIRP]', '', line)
    return line.replace('"', '')

def page(name):
    """{SH: [(SS, tag, body)]} of a man page: every .TP entry with its section."""
    secs, sh, ss, cur = {}, None, None, None
    for raw in open(f"{src}/docs/man/{name}", encoding="utf-8"):
        raw = raw.rstrip("\n")
        if raw.startswith('.\\"'):
            continue
        if raw.startswith('.SH'):
            sh, ss, cur = plain(raw[3:]).strip(), None, None
            secs.setdefault(sh, [])
        elif raw.startswith('.SS'):
            ss, cur = plain(raw[3:]).strip(), None
        elif raw.startswith('.TP'):
            cur = [ss, None, []]
            secs[sh].append(cur)
        elif cur is not None and cur[1] is None:
            cur[1] = plain(raw).strip()
        elif cur is not None and not raw.startswith(('.PP', '.RS', '.RE', '.EX', '.EE')):
            cur[2].append(plain(raw))
    return {k: [(e[0], e[1] or '', ' '.join(e[2])) for e in v] for k, v in secs.items()}

def source_opts(files):
    """Options a parser accepts: "--long" / "-x" literals and getopt_long { "x", ... } rows."""
    found = set()
    for f in files:
        text = open(f"{src}/{f}", encoding="utf-8").read()
        found |= set(re.findall(r'"(--[a-z][\w-]*|-[A-Za-z])"', text))
        found |= {"--" + n for n in re.findall(r'\{\s*"([a-z][\w-]*)",\s*[01],\s*NULL', text)}
    return found

def usage_commands(text):
    """scepctl: command name -> options of its usage entry (its line and the indented lines
    below it); None -> the options of the "usage:" lines."""
    cmds, cur = {None: set()}, None
    for line in text.splitlines():
        if line.startswith('usage:'):
            cur = None
            cmds[None] |= opts(line)
            continue
        m = re.match(r'^  ([a-z][\w-]*)(?: ([a-z][a-z-]*)(?=\s|$))?', line)
        if m:
            cur = m.group(1) + (' ' + m.group(2) if m.group(2) else '')
            cmds.setdefault(cur, set())
        if cur is not None:
            cmds[cur] |= opts(line)
    return cmds

programs = {
    'scepd': ('scepd.8', ['engine/server/main.c']),
    'scepctl': ('scepctl.8', ['engine/ctl/ctl.c', 'engine/ctl/ctl_ca.c']),
    'scep-loadgen': ('scep-loadgen.1', ['loadgen/loadgen.c']),
}
for prog, (man, files) in programs.items():
    usage = open(f"{tmp}/{prog}.usage").read()
    pg = page(man)
    check('OPTIONS' in pg, f"{man}: no OPTIONS section")
    entries = pg.get('OPTIONS', []) + pg.get('COMMANDS', [])
    doc_text = ' '.join(t + ' ' + b for _, t, b in entries)
    documented = opts(doc_text)
    printed, accepted = opts(usage), source_opts(files)
    check(len(printed) >= 2, f"{prog}: fewer than 2 options parsed from its usage text")
    for o in sorted(printed | accepted):
        check(o in documented, f"{man}: option {o} of {prog} is not documented")
    for o in sorted(documented - printed - accepted):
        check(False, f"{man}: documents {o}, which {prog} neither prints nor accepts")

# scepctl commands: one entry each, with that command's options in it, and nothing stale.
cmds = usage_commands(open(f"{tmp}/scepctl.usage").read())
check(len(cmds) > 10, "scepctl: fewer than 10 commands parsed from its usage texts")
entries = page('scepctl.8').get('COMMANDS', [])
global_opts = cmds.pop(None)
for cmd, copts in sorted(cmds.items()):
    hits = [(t, b) for _, t, b in entries if re.match(re.escape(cmd) + r'(\s|$)', t)]
    check(len(hits) == 1, f"scepctl.8: {len(hits)} entries for command '{cmd}', want 1")
    if len(hits) == 1:
        have = opts(hits[0][0] + ' ' + hits[0][1])
        for o in sorted(copts - have):
            check(False, f"scepctl.8: option {o} missing from the entry of '{cmd}'")
        for o in sorted(have - copts - global_opts):
            check(False, f"scepctl.8: the entry of '{cmd}' documents {o}, which it does not take")
        passed += 1
for _, tag, _ in entries:
    name = ' '.join(w for w in tag.split()[:2] if re.fullmatch(r'[a-z][a-z-]*', w))
    check(name in cmds or name.split()[0] in cmds,
          f"scepctl.8: entry '{tag}' is not a command of the usage texts")

# Configuration keys: the table of config_keys.c, the defaults of docs/configuration.md.
table = re.findall(r'^\s*\{\s*"(\w+)",\s*"(\w+)",\s*T_',
                   open(f"{src}/engine/common/config_keys.c").read(), re.M)
check(len(table) > 30, "config.c: fewer than 30 keys parsed from cfg_keys")
defaults, sec = {}, None
for line in open(f"{src}/docs/configuration.md", encoding="utf-8"):
    m = re.match(r'^## \[(\w+)\]', line)
    if m:
        sec = m.group(1)
    elif line.startswith('## '):
        sec = None
    m = re.match(r'^\| `(\w+)` \| (`[^|]*`|empty) \|', line)
    if m and sec:
        defaults[(sec, m.group(1))] = m.group(2).strip('`')
keys = {}
for ss, tag, body in page('scepd.conf.5').get('KEYS', []):
    s = ss.strip('[]') if ss else None
    keys.setdefault((s, tag), []).append(body)
for s, k in table:
    bodies = keys.get((s, k), [])
    check(len(bodies) == 1, f"scepd.conf.5: [{s}] {k}: {len(bodies)} entries, want 1")
    d = defaults.get((s, k))
    check(d is not None, f"docs/configuration.md: no default for [{s}] {k}")
    if len(bodies) == 1 and d is not None:
        check(f"Default: {d}." in bodies[0],
              f"scepd.conf.5: [{s}] {k}: want 'Default: {d}.' as in docs/configuration.md")
for (s, k) in sorted(keys, key=str):
    check((s, k) in table, f"scepd.conf.5: [{s}] {k} is not a key of config.c")

print(f"{passed} passed, {failed} failed (options and keys)")
sys.exit(1 if failed else 0)
PY

# Rendering: what lintian runs (man --warnings, UTF-8) and groff with every warning on.
bad=0
for p in "$SRC"/docs/man/*.[158]; do
  LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$p" >/dev/null 2>"$T/w" || true
  groff -ww -z -t -man "$p" 2>>"$T/w" || true
  if [ -s "$T/w" ]; then
    echo "FAIL - $(basename "$p"): warnings:"; cat "$T/w"; bad=$((bad + 1))
  fi
done
n=$(ls "$SRC"/docs/man/*.[158] | wc -l)
echo "$((n - bad)) passed, $bad failed (rendering)"
[ "$py_rc" -eq 0 ] && [ "$bad" -eq 0 ] && [ "$n" -eq 4 ]
