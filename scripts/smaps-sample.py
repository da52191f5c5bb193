#!/usr/bin/env python3
"""Where a process's memory is, over time: every INTERVAL seconds, the Rss of /proc/PID/smaps summed by
mapping (the brk heap, the stack, anonymous mappings up to 8 MiB (thread stacks), up to 64 MiB, and
larger (an allocator's arenas)), with VmRSS, RssAnon, the part of it in transparent huge pages
(AnonHugePages) and the thread count. One line per sample, until the process ends.

    scripts/smaps-sample.py PID [INTERVAL]      (the soak's server runs in cordon-bench's process)
"""
import collections
import re
import sys
import time

MAPPING = re.compile(r'^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \d+\s*(.*)$')


def bucket(size_kib, name):
    if name == '':
        if size_kib <= 8 * 1024 + 8:
            return 'anon<=8M'
        return 'anon<=64M' if size_kib <= 65 * 1024 else 'anon>64M'
    return name if name.startswith('[') else 'file'


def sample(pid):
    status = open(f'/proc/{pid}/status').read()
    smaps = open(f'/proc/{pid}/smaps').read()
    field = lambda k: int(re.search(rf'^{k}:\s+(\d+)', status, re.M).group(1))
    rss, count, cur, huge = collections.Counter(), collections.Counter(), None, 0
    for line in smaps.splitlines():
        m = MAPPING.match(line)
        if m:
            cur = bucket((int(m.group(2), 16) - int(m.group(1), 16)) // 1024, m.group(3))
            count[cur] += 1
        elif line.startswith('Rss:') and cur:
            rss[cur] += int(line.split()[1])
        elif line.startswith('AnonHugePages:'):
            huge += int(line.split()[1])
    parts = ' '.join(f'{k}={v // 1024}M/{count[k]}' for k, v in sorted(rss.items()) if k in
                     ('[heap]', '[stack]', 'anon<=8M', 'anon<=64M', 'anon>64M'))
    return (f"rss={field('VmRSS') // 1024}M anon={field('RssAnon') // 1024}M huge={huge // 1024}M "
            f"threads={field('Threads')} {parts}")


def main():
    pid, every = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    t0 = time.time()
    while True:
        try:
            line = sample(pid)
        except FileNotFoundError:
            return
        print(f't={time.time() - t0:6.0f}s {line}', flush=True)
        time.sleep(every)


if __name__ == '__main__':
    main()
