#!/usr/bin/env bash
# Layering check: which source file calls which, read from the object files
# with nm. Fails (exit 1) naming the files and symbols of every cycle, and,
# in core/, of every call from a folder into a folder above it. Prints the
# folders bottom up, then the files from the bottom layer up.
#
#   scripts/layers.sh [--no-build] [BUILD_DIR]
#                                        core/ (with cli/ on top) and every
#                                        plugin folder (builds BUILD_DIR
#                                        first unless --no-build; default
#                                        build)
#   scripts/layers.sh --objects NAME OBJ...
#                                        one group of object files (NAME
#                                        core: the folder order applies)
#   -q                                   print only findings and the verdict
set -euo pipefail
cd "$(dirname "$0")/.."

# core/'s folders from the bottom up: a folder may call its own folder and
# the folders before it, never one after it (docs/architecture.md).
CORE_FOLDERS="base io sql shell record model run call expr actions plan state exec fleet cli"

quiet=0 build=1
while [ $# -gt 0 ]; do
  case $1 in
    -q) quiet=1; shift ;;
    --no-build) build=0; shift ;;
    *) break ;;
  esac
done

check() { # NAME OBJ...
  local name=$1; shift
  local folders=""
  [ "$name" = core ] && folders=$CORE_FOLDERS
  {
    for o in "$@"; do
      local src
      # meson names objects after their path: ../postgres/x.c -> .._postgres_x.c,
      # core's run/run.c -> run_run.c
      src=$(basename "$o" .o | sed -E 's/^meson-generated_(\.\._)*//; s/^\.\._([a-z0-9]+)_/..\/\1\//')
      for f in $folders; do
        case $src in "${f}_"*) src="$f/${src#"${f}_"}"; break ;; esac
      done
      nm --defined-only -g "$o" | awk -v f="$src" '$2 ~ /^[TDBRGSV]$/ {print "D", f, $3}'
      nm --undefined-only -g "$o" | awk -v f="$src" '{print "U", f, $NF}'
    done
  } | python3 -c '
import sys
from collections import defaultdict
name, quiet, order = sys.argv[1], sys.argv[2] == "1", sys.argv[3].split()
defs, uses = {}, defaultdict(set)
files = []
for line in sys.stdin:
    kind, f, sym = line.split()
    if f not in files:
        files.append(f)
    if kind == "D":
        defs[sym] = f
    else:
        uses[f].add(sym)
edges = defaultdict(lambda: defaultdict(set))   # a -> b -> symbols
for f in files:
    for s in uses[f]:
        g = defs.get(s)
        if g and g != f:
            edges[f][g].add(s)
# Tarjan: strongly connected components
index, low, on, stack, comps, n = {}, {}, set(), [], [], [0]
def visit(v):
    index[v] = low[v] = n[0]; n[0] += 1
    stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        c = []
        while True:
            w = stack.pop(); on.discard(w); c.append(w)
            if w == v: break
        comps.append(sorted(c))
sys.setrecursionlimit(10000)
for f in sorted(files):
    if f not in index:
        visit(f)
cycles = [c for c in comps if len(c) > 1]
# folders: each file of core sits in one; calls only go down or sideways
def folder(f):
    return f.split("/", 1)[0] if "/" in f and not f.startswith("..") else None
rank = {d: i for i, d in enumerate(order)}
upward, strays = [], sorted(f for f in files if order and folder(f) not in rank)
for f in sorted(files):
    for g in sorted(edges[f]):
        a, b = folder(f), folder(g)
        if a in rank and b in rank and rank[b] > rank[a]:
            upward.append((f, g, sorted(edges[f][g])))
# layers: a file sits one above the highest file it uses
comp_of = {f: i for i, c in enumerate(comps) for f in c}
level = {}
def lv(f):
    if f in level: return level[f]
    level[f] = 0
    below = [lv(g) for g in edges[f] if comp_of[g] != comp_of[f]]
    level[f] = 1 + max(below) if below else 1
    return level[f]
for f in files: lv(f)
if not quiet and order:
    print("%s: %d folders, from the bottom up" % (name, len(order)))
    for d in order:
        mine = sorted(f for f in files if folder(f) == d)
        if not mine:
            continue
        used = sorted({folder(g) for f in mine for g in edges[f]} - {d, None},
                      key=lambda x: rank.get(x, -1))
        print("  %-8s %-40s %s" % (d + "/", " ".join(m.split("/", 1)[1] for m in mine),
                                   ("uses " + ", ".join(used)) if used else ""))
if not quiet:
    print("%s: %d files, from the bottom layer up" % (name, len(files)))
    for l in range(1, max(level.values(), default=0) + 1):
        for f in sorted(x for x in files if level[x] == l):
            deps = sorted(edges[f])
            print("  %2d  %-22s %s" % (l, f, ("uses " + ", ".join(deps)) if deps else ""))
for c in cycles:
    print("%s: CYCLE between %s" % (name, ", ".join(c)))
    for a in c:
        for b in c:
            if b in edges[a]:
                syms = sorted(edges[a][b])
                print("    %s -> %s: %s" % (a, b, ", ".join(syms)))
for f, g, syms in upward:
    print("%s: UPWARD call from %s/ into %s/: %s -> %s: %s"
          % (name, folder(f), folder(g), f, g, ", ".join(syms)))
for f in strays:
    print("%s: %s is in no known folder (scripts/layers.sh CORE_FOLDERS)" % (name, f))
if cycles:
    print("%s: %d cycle(s): a lower file calls back into a higher one; move the "
          "callee down or pass the data up (docs/architecture.md)" % (name, len(cycles)))
if upward:
    print("%s: %d upward call(s) across folders: a folder calls only its own "
          "folder and those below it (%s); move the callee down or pass a "
          "callback up" % (name, len(upward), " < ".join(order)))
if cycles or upward or strays:
    sys.exit(1)
print("%s: no cycle%s" % (name, ", every call goes down the folders" if order else ""))
' "$name" "$quiet" "$folders"
}

if [ "${1:-}" = "--objects" ]; then
  shift
  name=$1; shift
  check "$name" "$@"
  exit $?
fi

BUILD=${1:-build}
if [ $build = 1 ]; then
  [ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" >/dev/null
  ninja -C "$BUILD" >/dev/null
fi
rc=0
# core: the static library, and the command line (cli/, the executable's
# own objects) on top of it: nothing may call into cli/.
mapfile -t objs < <(ls "$BUILD"/core/libengine_core.a.p/*.o "$BUILD"/core/engine.p/*.o)
check core "${objs[@]}" || rc=1
for d in "$BUILD"/plugins/*/; do
  p=$(basename "$d")
  mapfile -t objs < <(find "$d" -name '*.o' | sort)
  [ ${#objs[@]} -gt 0 ] || continue
  check "plugins/$p" "${objs[@]}" || rc=1
done
exit $rc
