#!/usr/bin/env python3
"""Caps a corpus directory at MAX inputs, keeping those that cover the most edges.

    python3 fuzz/cap_corpus.py TARGET CORPUS_DIR MAX

libFuzzer's set-cover merge keeps every covered edge, which for the config target (serde_yaml,
serde_json and the readers behind it) takes several hundred inputs that each add an edge or
two. This asks the target's fuzz binary (built by `cargo fuzz build --sanitizer none`) which
edges each input covers (a merge control file), picks inputs greedily by the edges they add,
deletes the rest and prints the share of edges kept. scripts/fuzz.sh runs it after FUZZ_MERGE.
"""

import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    target, corpus, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    binary = os.path.join(ROOT, "fuzz/target/x86_64-unknown-linux-gnu/release", target)
    with tempfile.TemporaryDirectory() as tmp:
        control = os.path.join(tmp, "control")
        out = os.path.join(tmp, "out")
        os.mkdir(out)
        subprocess.run(["nice", "-n", "19", binary, "-merge=1", "-use_counters=0",
                        f"-merge_control_file={control}", out, corpus],
                       check=True, capture_output=True)
        lines = open(control).read().split("\n")
    count = int(lines[0])
    files = lines[2:2 + count]
    features = {}
    for line in lines[2 + count:]:
        parts = line.split()
        if parts and parts[0] == "FT":
            features[int(parts[1])] = set(map(int, parts[2:]))
    total = set().union(*features.values()) if features else set()
    covered, keep = set(), []
    remaining = dict(features)
    while remaining and len(keep) < limit:
        # Most new edges first; among equals, the smaller input.
        best = max(remaining, key=lambda i: (len(remaining[i] - covered),
                                             -os.path.getsize(files[i])))
        if not remaining[best] - covered:
            break
        covered |= remaining.pop(best)
        keep.append(best)
    kept = {files[i] for i in keep}
    for f in files:
        if f not in kept:
            os.remove(f)
    share = 100.0 * len(covered) / len(total) if total else 100.0
    print(f"   {corpus}: kept {len(kept)} of {count} inputs, {len(covered)} of {len(total)} "
          f"edges ({share:.1f}%)")


if __name__ == "__main__":
    main()
