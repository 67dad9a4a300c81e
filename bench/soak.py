#!/usr/bin/env python3
"""slurm-vm soak with faults (issue 20): VM jobs over every node while faults are injected.

Run it through bench/soak.sh, as root, on the machine of the local test cluster:

    bench/soak.sh [--jobs N] [--seed S] [--quick] [--concurrency K] [--faults LIST] [--dry-run]

The plan (which jobs, in which order, which faults after which job, and each fault's
parameters) follows from --seed and --jobs alone: `--dry-run` prints it without a cluster.
What a fault meets at run time (which job is running when it fires) depends on timing and is
logged. At the end it prints one table: jobs by final state and the words users got, every
fault and what it did to its jobs, and the checks (leaks, drained nodes, accounting), each PASS
or FAIL with the offenders. Exit status 0 only if every check passed.

Other modes, used by soak.sh: `--cleanup-only` undoes whatever a killed run left (a stopped
QEMU, the small file system over the jobs folder, a daemon it stopped); `--pty-session` drives
one `srun --pty` on a pseudo-terminal; `--self-test` checks the pure pieces (no cluster).
"""
import argparse
import collections
import dataclasses
import fcntl
import glob
import json
import math
import os
import random
import re
import select
import shlex
import signal
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
USER = os.environ.get("SVM_TEST_USER", "svmuser")
SVM_LOG = os.environ.get("SVM_LOG", "/var/log/slurm-vm")
SLURM_CONF = os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")
PLUGSTACK = "/etc/slurm/plugstack.conf"
LIBVIRT_RUN = "/run/libvirt/qemu"
JOURNAL_DIR = "/run/svm-soak"
JOURNAL = JOURNAL_DIR + "/journal.json"
VIRSH = ["virsh", "-q", "-c", "qemu:///system"]

# ---------------------------------------------------------------------------------------------
# The plan: pure, from the seed.
# ---------------------------------------------------------------------------------------------

FAULTS = {
    "qemu_kill": "kill -9 of a running job's QEMU",
    "qemu_stop": "kill -STOP of a running job's QEMU, left stopped",
    "agent_kill": "the agent killed (kill -9) inside a running job's guest, as the guest's root",
    "slurmd_restart": "kill -9 of one slurmd, then started again as contrib/cluster.sh starts it",
    "libvirtd_restart": "libvirtd restarted (contrib/cluster.sh restart-libvirt)",
    "slurmctld_restart": "slurmctld stopped (SIGTERM) and started again",
    "slurmdbd_outage": "slurmdbd stopped for a while, then started (contrib/cluster.sh)",
    "scancel_boot": "scancel of a job while its VM boots",
    "scancel_save": "scancel of a job while its warm-start snapshot is made and saved",
    "snapshot_corrupt": "the state file of warm-start snapshots corrupted",
    "fs_full": "the state folder's file system full (a small file system over <state_dir>/jobs)",
    "guest_panic": "a guest whose kernel panics while it boots (image 'panics')",
}
# How often each fault is injected in a full run of 200 jobs (scaled with --jobs); --quick: once.
FULL_COUNTS = {
    "qemu_kill": 3, "qemu_stop": 2, "agent_kill": 3, "slurmd_restart": 2, "libvirtd_restart": 3,
    "slurmctld_restart": 2, "slurmdbd_outage": 2, "scancel_boot": 3, "scancel_save": 2,
    "snapshot_corrupt": 2, "fs_full": 2, "guest_panic": 3,
}
# Faults that bring their own jobs (counted in --jobs): how many.
VICTIMS = {"scancel_boot": 1, "scancel_save": 1, "snapshot_corrupt": 1, "fs_full": 2,
           "guest_panic": 1}
# Faults aimed at a running job: the mix job just before each is long, so there is one to hit.
TARGETED = ("qemu_kill", "qemu_stop", "agent_kill")

# What a fault may do to the jobs it hits, and the words a failure must contain to name it.
# `states`: the final states its own targets or victims may end in. `words`: a regex the
# failure's words (first slurm-vm line of the output, Slurm's reason) must match. Jobs that only
# ran while a fault happened (daemon restarts) are held to `words` when they did not complete.
EXPECT = {
    "qemu_kill": ({"FAILED"}, r"VM stopped|agent went away|VM .*(gone|died)|QEMU"),
    "qemu_stop": ({"CANCELLED", "TIMEOUT", "FAILED"},
                  r"did not answer|deadline|timed? ?out|stopped|not respond"),
    "agent_kill": ({"FAILED"}, r"agent"),
    "slurmd_restart": (None, r"slurmd|NODE_FAIL|node fail|Prolog|Kill task failed|"
                             r"not responding|Communication"),
    "libvirtd_restart": (None, r"libvirt"),
    "slurmctld_restart": (None, r"slurmctld|controller|Unable to contact|Socket timed out"),
    "slurmdbd_outage": (None, r"slurmdbd|accounting"),
    "scancel_boot": ({"CANCELLED"}, r"CANCELLED|cancel"),
    "scancel_save": ({"CANCELLED"}, r"CANCELLED|cancel"),
    "snapshot_corrupt": ({"COMPLETED"}, r"snapshot|warm|restore|save file"),
    "fs_full": ({"FAILED"}, r"no room"),
    "guest_panic": ({"FAILED"}, r"stopped while it booted"),
}

FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
START_RE = re.compile(r"soak-start \d+")
END_RE = re.compile(r"soak-end \d+")


@dataclasses.dataclass
class JobSpec:
    idx: int            # 1..N, in the order of the plan
    kind: str           # batch (sbatch), step (srun), pty (srun --pty)
    image: str
    nodes: int = 1
    cpus: int = 1
    mem: int = 0        # MiB per node, 0: Slurm's default (DefMemPerCPU)
    sleep: int = 2      # seconds the job's command sleeps in the guest
    limit: int = 3      # time limit, minutes
    role: str = "mix"   # mix, bait (a long job a targeted fault should meet), victim
    fault: int = 0      # for a victim: the number of its fault
    node: str = ""      # -w, for victims that need a node
    fresh_mem: bool = False  # scancel_save: a size no snapshot exists for, chosen at run time

    def describe(self):
        words = [f"{self.kind:<5}", f"{self.image:<8}", f"{self.nodes}N", f"c{self.cpus}"]
        words.append(f"mem={self.mem}" if self.mem else ("mem=fresh" if self.fresh_mem else "mem=def"))
        words += [f"sleep={self.sleep}s", f"t={self.limit}m"]
        if self.node:
            words.append(f"-w {self.node}")
        return " ".join(words)


@dataclasses.dataclass
class FaultSpec:
    num: int
    kind: str
    after_job: int      # fires once job `after_job` was submitted (plus `delay` seconds)
    delay: float
    params: dict
    victims: list

    def describe(self):
        p = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"fault {self.num:>2} {self.kind:<18} after job {self.after_job:>3} +{self.delay:.0f}s {p}"


def limit_for(image, sleep):
    """A time limit that a cold boot and a snapshot make under TCG fit in: it only ends jobs that
    are stuck (debian11's first boot and save took 3 min here with two other VMs running)."""
    return (8 if image.startswith("debian11") else 3) + math.ceil(sleep / 60)


def mix_job(rng, idx, quick):
    image = "debian11" if rng.random() < 0.35 else "tiny"
    r = rng.random()
    kind = "batch" if r < 0.55 else ("step" if r < 0.90 else "pty")
    nodes = 2 if kind != "pty" and rng.random() < 0.2 else 1
    cpus = 2 if nodes == 1 and rng.random() < 0.15 else 1
    if rng.random() < (0.2 if quick else 0.25):
        sleep = rng.randint(15, 30) if quick else rng.randint(20, 60)
    else:
        sleep = rng.randint(1, 4 if quick else 5)
    return JobSpec(idx=idx, kind=kind, image=image, nodes=nodes, cpus=cpus, sleep=sleep,
                   limit=limit_for(image, sleep))


def fault_counts(n_jobs, quick, kinds):
    if quick:
        return {k: 1 for k in kinds}
    return {k: max(1, round(FULL_COUNTS[k] * n_jobs / 200)) for k in kinds}


def make_plan(n_jobs, seed, quick, kinds):
    """(items, jobs, faults): items is the order of the run, ("job", JobSpec) or ("fault",
    FaultSpec). Everything here follows from the arguments."""
    rng = random.Random(seed)
    counts = fault_counts(n_jobs, quick, kinds)
    fault_kinds = [k for k in kinds for _ in range(counts[k])]
    rng.shuffle(fault_kinds)
    n_victims = sum(VICTIMS.get(k, 0) for k in fault_kinds)
    n_mix = n_jobs - n_victims
    first = 6  # snapshots exist and a few jobs run before the first fault
    need = first + len(fault_kinds) + 1
    if n_mix < need:
        raise ValueError(f"{n_jobs} jobs are too few for {len(fault_kinds)} faults "
                         f"({n_victims} of their own jobs): use --jobs {need + n_victims} or more")
    mix = [mix_job(rng, 0, quick) for _ in range(n_mix)]
    # Fault k after mix job positions[k] (1-based), spread over the run with some jitter.
    span = n_mix - first
    gap = span / max(1, len(fault_kinds))
    positions = []
    for k in range(len(fault_kinds)):
        p = first + int((k + 0.5) * gap) + rng.randint(-int(gap / 4), int(gap / 4))
        lo = positions[-1] + 1 if positions else first
        positions.append(min(max(p, lo), n_mix - (len(fault_kinds) - k) + 1))
    items, jobs, faults = [], [], []
    at = dict(zip(positions, fault_kinds))
    num = 0
    for pos, spec in enumerate(mix, start=1):
        kind = at.get(pos)
        if kind in TARGETED:
            # The bait: a long one-node batch job, running when the fault fires.
            spec.kind, spec.nodes, spec.cpus, spec.role = "batch", 1, 1, "bait"
            spec.sleep = rng.randint(25, 40) if quick else rng.randint(30, 60)
            spec.limit = limit_for(spec.image, spec.sleep)
        spec.idx = len(jobs) + 1
        jobs.append(spec)
        items.append(("job", spec))
        if kind is None:
            continue
        num += 1
        params = {}
        delay = rng.uniform(3, 10)
        if kind == "qemu_stop":
            # --quick: always scancel 15 s later (waiting for the time limit costs 2 min).
            params["then"] = "scancel" if quick else rng.choice(["scancel", "wait"])
            if params["then"] == "wait":
                # Left to its time limit: a short one, on the fast image.
                spec.image, spec.sleep, spec.limit = "tiny", 90, 2
        elif kind == "slurmd_restart":
            params["down_s"] = rng.randint(2, 8)
            params["node"] = "busy"  # a node with a running VM job, else any (chosen then)
        elif kind == "slurmctld_restart":
            params["down_s"] = rng.randint(2, 6)
        elif kind == "slurmdbd_outage":
            params["down_s"] = 15 if quick else rng.randint(20, 45)
        elif kind == "snapshot_corrupt":
            params["how"] = rng.choice(["header", "truncate"])
        elif kind == "agent_kill":
            delay = rng.uniform(5, 12)
        victims = []
        for v in range(VICTIMS.get(kind, 0)):
            victims.append(victim_job(rng, kind, v, len(jobs) + len(victims) + 1, num))
        fault = FaultSpec(num=num, kind=kind, after_job=spec.idx, delay=round(delay, 1),
                          params=params, victims=victims)
        faults.append(fault)
        items.append(("fault", fault))
        jobs.extend(victims)
    return items, jobs, faults


def victim_job(rng, kind, v, idx, num):
    if kind == "scancel_boot":
        return JobSpec(idx=idx, kind="batch", image="debian11", sleep=30,
                       limit=limit_for("debian11", 30), role="victim", fault=num)
    if kind == "scancel_save":
        return JobSpec(idx=idx, kind="batch", image="debian11", sleep=5, fresh_mem=True,
                       limit=limit_for("debian11", 5) + 2, role="victim", fault=num)
    if kind == "snapshot_corrupt":
        return JobSpec(idx=idx, kind="batch", image="tiny", sleep=2, limit=3, role="victim",
                       fault=num)
    if kind == "fs_full":
        # Each on its own node (-w, chosen when the fault runs): one batch job, one srun.
        return JobSpec(idx=idx, kind="batch" if v == 0 else "step", image="tiny", sleep=2,
                       limit=3, role="victim", fault=num)
    if kind == "guest_panic":
        return JobSpec(idx=idx, kind=rng.choice(["batch", "step"]), image="panics", sleep=1,
                       limit=3, role="victim", fault=num)
    raise ValueError(kind)


def print_plan(items, jobs, faults, seed, quick, file=sys.stdout):
    kinds = collections.Counter(j.kind for j in jobs)
    images = collections.Counter(j.image for j in jobs)
    print(f"plan for seed {seed}: {len(jobs)} jobs ({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))}; "
          f"{', '.join(f'{v} {k}' for k, v in sorted(images.items()))}; "
          f"{sum(1 for j in jobs if j.nodes == 2)} on 2 nodes), {len(faults)} faults"
          f"{' (quick)' if quick else ''}", file=file)
    for what, x in items:
        if what == "job":
            print(f"  job   {x.idx:>3} {x.describe()}  {x.role}", file=file)
        else:
            print(f"  {x.describe()}", file=file)
            for v in x.victims:
                print(f"  job   {v.idx:>3} {v.describe()}  victim of fault {x.num}", file=file)


# ---------------------------------------------------------------------------------------------
# Small helpers.
# ---------------------------------------------------------------------------------------------

def run(argv, timeout=60, env=None, check=False):
    """(returncode, stdout, stderr); never raises for a failing or missing program."""
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout, env=env, errors="replace")
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        return 124, out.decode(errors="replace") if isinstance(out, bytes) else out, \
            f"timed out after {timeout} s"
    except OSError as e:
        return 127, "", str(e)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
    return r.returncode, r.stdout, r.stderr


DAEMON_LOG = [os.devnull]  # where started daemons' and contrib/cluster.sh's output goes


def run_daemon(argv, timeout=180):
    """(returncode, the end of what it printed) for a command that starts a daemon: its output
    goes to a file, never a pipe, which a daemon that keeps its descriptors would hold open."""
    path = DAEMON_LOG[0]
    try:
        before = os.path.getsize(path) if path != os.devnull else 0
    except OSError:
        before = 0
    try:
        with open(path, "ab") as log:
            if path != os.devnull:
                log.write(f"$ {' '.join(argv)}\n".encode())
                log.flush()
            rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        rc = 124
    except OSError as e:
        return 127, str(e)
    if path == os.devnull:
        return rc, ""
    with open(path, "rb") as log:
        log.seek(before)
        return rc, log.read().decode(errors="replace").strip()[-300:]


def user_argv(work, command):
    """A shell command line run as the test user in `work`, as tests/integration/lib.sh does."""
    return ["runuser", "-u", USER, "--", "env", f"HOME=/home/{USER}", f"USER={USER}",
            f"LOGNAME={USER}", "bash", "-c", f"cd {shlex.quote(work)} && {command}"]


def first_words(text):
    """The words a user got: the first slurm-vm or srun error line of the output, else its first
    non-empty line (for a table cell)."""
    lines = [l.strip() for l in text.replace("\r", "\n").splitlines() if l.strip()]
    for line in lines:
        if line.startswith("slurm-vm:") or line.startswith("srun: error") or "error:" in line[:40]:
            return line[:300]
    return lines[0][:300] if lines else ""


def normalise(words):
    """Words with job ids, node numbers, times and pids folded, to group like failures."""
    w = re.sub(r"\b(job|jobid) \d+", r"\1 N", words)
    w = re.sub(r"svm-\d+-node\d", "svm-N-nodeN", w)
    w = re.sub(r"node\d", "nodeN", w)
    w = re.sub(r"\d+(\.\d+)?", "#", w)
    return w[:160]


def read_text(path, limit=1 << 16):
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode(errors="replace")
    except OSError:
        return ""


def proc_comm(pid):
    return read_text(f"/proc/{pid}/comm").strip()


def proc_cmdline(pid):
    return read_text(f"/proc/{pid}/cmdline").replace("\0", " ").strip()


def proc_start(pid):
    """The process's start time (clock ticks since boot), to tell a reused pid from it."""
    stat = read_text(f"/proc/{pid}/stat")
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def proc_state(pid):
    stat = read_text(f"/proc/{pid}/stat")
    try:
        return stat.rsplit(")", 1)[1].split()[0]
    except IndexError:
        return ""


def pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def with_systemd():
    return os.path.isdir("/run/systemd/system")


def fmt_s(t):
    if t is None:
        return "-"
    return f"{t:.0f}s" if t < 120 else f"{int(t // 60)}m{int(t % 60):02d}s"


# ---------------------------------------------------------------------------------------------
# What the cluster is: slurm.conf, the plugstack line, the catalog.
# ---------------------------------------------------------------------------------------------

def conf_values(path):
    out = {}
    for line in read_text(path, 1 << 20).splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line and " " not in line.split("=", 1)[0]:
            k, v = line.split("=", 1)
            out.setdefault(k.strip().lower(), v.strip())
    return out


def plugstack_options():
    """The slurm-vm plugstack line's options, with the admin guide's defaults."""
    opts = {"catalog": "/etc/slurm/vm-images.json", "state_dir": "/var/lib/slurm-vm",
            "run_dir": "/run/slurm-vm", "log_dir": "/var/log/slurm-vm", "exec_ports": "8",
            "grace": "30", "memory_overhead": "256", "plugin": ""}
    files = [PLUGSTACK] + sorted(glob.glob(os.path.dirname(PLUGSTACK) + "/plugstack.conf.d/*.conf"))
    for f in files:
        for line in read_text(f).splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) >= 2 and words[1].endswith("spank_slurm_vm.so"):
                opts["plugin"] = words[1]
                for w in words[2:]:
                    if "=" in w:
                        k, v = w.split("=", 1)
                        opts[k] = v
    return opts


class Cluster:
    """Paths and facts of the running cluster, read once."""

    def __init__(self):
        self.opts = plugstack_options()
        self.state_dir = self.opts["state_dir"]
        self.run_dir = self.opts["run_dir"]
        self.log_dir = self.opts["log_dir"]
        self.jobs_dir = self.state_dir + "/jobs"
        self.warm_dir = self.state_dir + "/warm"
        self.exec_ports = int(self.opts["exec_ports"])
        self.overhead = int(self.opts["memory_overhead"])
        plugin_dir = os.path.dirname(self.opts["plugin"]) or "/usr/local/lib/slurm-vm"
        self.exec_client = plugin_dir + "/slurm-vm-exec"
        conf = conf_values(SLURM_CONF)
        self.slurmctld_pidfile = conf.get("slurmctldpidfile", "")
        self.slurmd_pidfile = conf.get("slurmdpidfile", "")
        self.slurmd_log = conf.get("slurmdlogfile", SVM_LOG + "/slurmd-%n.log")
        self.def_mem_per_cpu = int(conf.get("defmempercpu", "512") or 512)
        rc, out, _ = run(["sinfo", "-h", "-N", "-o", "%N"])
        self.nodes = sorted(set(out.split())) if rc == 0 else []
        try:
            with open(self.opts["catalog"]) as f:
                self.images = {e["name"] for e in json.load(f)["images"]}
        except (OSError, ValueError, KeyError):
            self.images = set()

    def slurmd_log_of(self, node):
        return self.slurmd_log.replace("%n", node).replace("%h", node)


# ---------------------------------------------------------------------------------------------
# The journal: what the soak changed and must undo, written before each change, so a killed run
# is undone by `--cleanup-only` (soak.sh's trap).
# ---------------------------------------------------------------------------------------------

class Journal:
    def __init__(self):
        self.lock = threading.Lock()

    def load(self):
        try:
            with open(JOURNAL) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def _save(self, data):
        os.makedirs(JOURNAL_DIR, mode=0o700, exist_ok=True)
        tmp = JOURNAL + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
        os.rename(tmp, JOURNAL)

    def add(self, key, value):
        with self.lock:
            data = self.load()
            data.setdefault(key, [])
            if value not in data[key]:
                data[key].append(value)
            self._save(data)

    def remove(self, key, value):
        with self.lock:
            data = self.load()
            if value in data.get(key, []):
                data[key].remove(value)
            self._save(data)

    def set(self, key, value):
        with self.lock:
            data = self.load()
            data[key] = value
            self._save(data)


def cleanup(journal, say=print):
    """Undoes whatever the journal says the soak changed. Idempotent; what it does is printed."""
    data = journal.load()
    if not data:
        return
    for p in data.get("stopped_qemu", []):
        pid, start, dom = p["pid"], p["start"], p["dom"]
        if proc_start(pid) == start:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            say(f"soak cleanup: resumed QEMU {pid} of {dom}, stopped by the soak "
                f"(still there: the product's orphan sweep or `virsh destroy {dom}` removes it)")
        journal.remove("stopped_qemu", p)
    for m in data.get("mounts", []):
        undo_mount(m, say)
        journal.remove("mounts", m)
    for node in data.get("slurmd_down", []):
        if not slurmd_pid(None, node):
            say(f"soak cleanup: starting slurmd of {node}, which the soak stopped")
            start_slurmd(node)
        journal.remove("slurmd_down", node)
    if "slurmctld" in data.get("daemons_down", []):
        if run(["scontrol", "ping"], timeout=20)[1].find("UP") < 0:
            say("soak cleanup: starting slurmctld, which the soak stopped")
            start_slurmctld()
        journal.remove("daemons_down", "slurmctld")
    if "slurmdbd" in data.get("daemons_down", []):
        say("soak cleanup: starting slurmdbd, which the soak stopped")
        run_daemon([REPO + "/contrib/cluster.sh", "start-slurmdbd"])
        journal.remove("daemons_down", "slurmdbd")
    if "libvirtd" in data.get("daemons_down", []):
        if run(VIRSH + ["version"], timeout=20)[0] != 0:
            say("soak cleanup: starting libvirtd, which the soak restarted")
            run_daemon([REPO + "/contrib/cluster.sh", "restart-libvirt"])
        journal.remove("daemons_down", "libvirtd")
    prefix = data.get("job_prefix")
    if prefix:
        rc, out, _ = run(["squeue", "-h", "-u", USER, "-o", "%i|%j"], timeout=30)
        ids = [l.split("|", 1)[0] for l in out.splitlines()
               if "|" in l and l.split("|", 1)[1].startswith(prefix)]
        if ids:
            say(f"soak cleanup: cancelling the soak's jobs still there: {' '.join(ids)}")
            run(["scancel"] + ids, timeout=30)
    try:
        os.remove(JOURNAL)
        os.rmdir(JOURNAL_DIR)
    except OSError:
        pass


def top_mount_source(target):
    """The source of the file system mounted last on `target`, or None."""
    source = None
    for line in read_text("/proc/self/mounts", 1 << 22).splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] == target:
            source = parts[0]
    return source


def undo_mount(m, say=print):
    """Unmounts the soak's own file system, never one that was there before it."""
    target = m.get("target")
    if target and m.get("source") and top_mount_source(target) == m["source"]:
        for _ in range(20):
            if run(["umount", target], timeout=30)[0] == 0:
                break
            time.sleep(0.5)
        else:
            run(["umount", "-l", target], timeout=30)
            say(f"soak cleanup: {target} was busy: unmounted lazily")
    if m.get("loop"):
        run(["losetup", "-d", m["loop"]], timeout=30)
    if m.get("image"):
        try:
            os.remove(m["image"])
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# Daemons: found by pid file, else by their command line; started as contrib/cluster.sh does.
# ---------------------------------------------------------------------------------------------

def is_daemon(pid, name):
    """Whether `pid` runs Slurm's daemon `name`: Debian installs slurmd as slurmd-wlm behind
    alternatives, and from Slurm 23.11 on a reconfigure execs it anew by that name."""
    return proc_comm(pid) in (name, name + "-wlm")


def pid_from_file(path, name):
    try:
        pid = int(read_text(path).strip())
    except ValueError:
        return None
    return pid if is_daemon(pid, name) else None


def slurmd_pid(cluster, node):
    if cluster and cluster.slurmd_pidfile:
        pid = pid_from_file(cluster.slurmd_pidfile.replace("%n", node), "slurmd")
        if pid:
            return pid
    for pid in pids():
        if is_daemon(pid, "slurmd"):
            argv = read_text(f"/proc/{pid}/cmdline").split("\0")
            if node in argv and "-N" in argv:
                return pid
    return None


def slurmctld_pid(cluster):
    if cluster.slurmctld_pidfile:
        pid = pid_from_file(cluster.slurmctld_pidfile, "slurmctld")
        if pid:
            return pid
    for pid in pids():
        if is_daemon(pid, "slurmctld"):
            return pid
    return None


def start_slurmd(node):
    if with_systemd():
        return run_daemon(["systemctl", "start", f"slurmd@{node}"], timeout=60)
    return run_daemon(["slurmd", "-N", node], timeout=60)


def start_slurmctld():
    if with_systemd():
        return run_daemon(["systemctl", "start", "slurmctld"], timeout=60)
    return run_daemon(["slurmctld"], timeout=60)


# ---------------------------------------------------------------------------------------------
# slurmd's logs: the plugin's lines about each job, read as they grow.
# ---------------------------------------------------------------------------------------------

LOG_RE = re.compile(r"slurm-vm: job (\d+) node (\S+)(?: image (\S+))?: (.*)")


def classify_log(rest):
    if re.match(r"VM \S+ ready as \S+ \(.*\): (warm|cold)", rest):
        return "ready_" + re.match(r"VM \S+ ready as \S+ \(.*?\): (warm|cold)", rest).group(1)
    for prefix, kind in (("no warm start:", "no_warm"), ("made a warm-start snapshot", "snapshot"),
                         ("VM not started:", "not_started"), ("node fault:", "node_fault"),
                         ("VM stopped", "stopped"), ("VM placed", "placed"),
                         ("VM not placed", "not_placed")):
        if rest.startswith(prefix):
            return kind
    return "other"


class SlurmdLogs:
    def __init__(self, cluster):
        self.files = {n: cluster.slurmd_log_of(n) for n in cluster.nodes}
        self.offsets = {}
        for n, f in self.files.items():
            try:
                self.offsets[n] = os.path.getsize(f)
            except OSError:
                self.offsets[n] = 0
        self.events = collections.defaultdict(list)  # jobid -> [(t, node, kind, text)]
        self.lock = threading.Lock()
        self.t0 = None

    def refresh(self, now):
        with self.lock:
            for n, f in self.files.items():
                try:
                    with open(f, "rb") as fh:
                        size = os.fstat(fh.fileno()).st_size
                        if size < self.offsets[n]:
                            self.offsets[n] = 0  # rotated
                        fh.seek(self.offsets[n])
                        data = fh.read(size - self.offsets[n])
                except OSError:
                    continue
                end = data.rfind(b"\n")
                if end < 0:
                    continue
                self.offsets[n] += end + 1
                for line in data[:end].decode(errors="replace").splitlines():
                    m = LOG_RE.search(line)
                    if m:
                        self.events[m.group(1)].append(
                            (now, m.group(2), classify_log(m.group(4)), line.strip()[:400]))

    def of(self, jobid, kind=None):
        with self.lock:
            return [e for e in self.events.get(str(jobid), []) if kind is None or e[2].startswith(kind)]

    def all_of_kind(self, kind):
        with self.lock:
            return [(j, e) for j, es in self.events.items() for e in es if e[2].startswith(kind)]


# ---------------------------------------------------------------------------------------------
# libvirt's view, without a libvirt connection (cheap enough to poll): its status files.
# ---------------------------------------------------------------------------------------------

def live_domains():
    try:
        names = os.listdir(LIBVIRT_RUN)
    except OSError:
        return set()
    return {n[:-4] for n in names if n.startswith("svm-") and n.endswith(".pid")}


def domain_paused(dom):
    head = read_text(f"{LIBVIRT_RUN}/{dom}.xml", 2000)
    return "state='paused'" in head


def qemu_pid_of(dom):
    try:
        pid = int(read_text(f"{LIBVIRT_RUN}/{dom}.pid").strip())
    except ValueError:
        return None
    # QEMU's command line names its domain: -name guest=<domain>,debug-threads=on
    return pid if re.search(rf"guest={re.escape(dom)}(,|\s|$)", proc_cmdline(pid)) else None


def warm_shapes(warm_dir, image):
    """(vcpus, guest MiB) of every snapshot of `image` on this host, from their meta.json."""
    shapes = set()
    for meta in glob.glob(f"{warm_dir}/{image}/*/*/slot-*/meta.json"):
        key = read_text(meta)
        m = re.search(r"<memory unit='MiB'>(\d+)</memory>", key.replace("\\n", "\n"))
        c = re.search(r"<vcpu>(\d+)</vcpu>", key)
        if m and c:
            shapes.add((int(c.group(1)), int(m.group(1))))
    return shapes


def warm_slots(warm_dir, image, vcpus, mem):
    """Slot folders of `image` with a state file, for that shape: [(slot dir, lock path)]."""
    out = []
    for meta in sorted(glob.glob(f"{warm_dir}/{image}/*/*/slot-*/meta.json")):
        key = read_text(meta)
        if f"<memory unit='MiB'>{mem}</memory>" in key and f"<vcpu>{vcpus}</vcpu>" in key:
            slot = os.path.dirname(meta)
            if os.path.isfile(slot + "/state"):
                out.append((slot, slot + ".lock"))
    return out


def warm_partials(warm_dir):
    return sorted(glob.glob(f"{warm_dir}/*/*/*/slot-*/state.part") +
                  glob.glob(f"{warm_dir}/*/*/*/slot-*/channels"))


# ---------------------------------------------------------------------------------------------
# Leak checks.
# ---------------------------------------------------------------------------------------------

def cgroup_job_folders():
    """[(path, jobid)] of Slurm job cgroup folders: cgroup v1 (a hierarchy per controller,
    <ctl>/slurm[_<node>]/uid_<u>/job_<j>) and v2 (<...>/[<node>_]slurmstepd.scope/job_<j>)."""
    found = []
    root = "/sys/fs/cgroup"
    for d in glob.glob(f"{root}/*/slurm*/uid_*/job_*"):
        found.append(d)
    if os.path.exists(f"{root}/cgroup.controllers"):
        for depth in range(1, 5):
            pattern = root + "/*" * (depth - 1) + "/*slurmstepd.scope/job_*"
            found += glob.glob(pattern)
    out = []
    for d in sorted(set(found)):
        m = re.search(r"job_(\d+)$", d)
        if m and os.path.isdir(d):
            out.append((d, m.group(1)))
    return out


def vm_processes():
    """QEMUs of slurm-vm domains, virtiofsd, slurm-vm-exec: [(kind, pid, state, what)]."""
    out = []
    for pid in pids():
        comm = proc_comm(pid)
        if comm.startswith("qemu-system"):
            cmd = proc_cmdline(pid)
            m = re.search(r"guest=(svm-[^, ]+)", cmd)
            if m:
                out.append(("qemu", pid, proc_state(pid), m.group(1)))
        elif comm == "virtiofsd":
            out.append(("virtiofsd", pid, proc_state(pid), proc_cmdline(pid)[:80]))
        elif comm == "slurm-vm-exec":
            out.append(("slurm-vm-exec", pid, proc_state(pid), proc_cmdline(pid)[:80]))
    return out


def node_states():
    """{node: (state, reason)} from sinfo (each node once; hidden partitions repeat them)."""
    rc, out, _ = run(["sinfo", "-h", "-N", "-o", "%N|%T|%E"], timeout=30)
    if rc != 0:
        return None
    states = {}
    for line in out.splitlines():
        parts = line.split("|", 2)
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2])
    return states


def node_is_fine(state):
    """Up and answering: sinfo's long state without '*' (not responding) or a drain."""
    if "*" in state or "drain" in state:
        return False
    return state.rstrip("~#$@+%!^-") in ("idle", "mixed", "allocated", "completing")


def leftovers(cluster, running_ids=()):
    """What slurm-vm left: {check: [offender, ...]}."""
    out = {}
    rc, doms, err = run(VIRSH + ["list", "--all", "--name"], timeout=60)
    out["domains"] = ([d for d in doms.split() if d.startswith("svm-")] if rc == 0
                      else [f"(virsh list failed: {err.strip()[:100]})"])
    out["job folders"] = sorted(glob.glob(cluster.jobs_dir + "/*"))
    out["channel folders"] = sorted(glob.glob(cluster.run_dir + "/*"))
    out["warm-start partials"] = warm_partials(cluster.warm_dir)
    out["cgroup folders"] = [p for p, j in cgroup_job_folders() if j not in running_ids]
    out["processes"] = [f"{k} {pid} ({'STOPPED ' if st == 'T' else ''}{what})"
                        for k, pid, st, what in vm_processes()]
    return out


# ---------------------------------------------------------------------------------------------
# One job of the run.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class JobRun:
    spec: JobSpec
    name: str
    out: str = ""
    jobid: str = ""
    submitted: float = None
    done: float = None
    proc: object = None
    rc: int = None
    submit_error: str = ""
    state: str = ""
    reason: str = ""
    nodes: str = ""
    pending_since: float = None
    stuck: bool = False
    mem: int = 0
    last_seen: float = None
    hits: list = dataclasses.field(default_factory=list)
    acct: dict = dataclasses.field(default_factory=dict)

    def output(self):
        return read_text(self.out) if self.out else ""

    def final_state(self):
        s = (self.acct.get("State") or self.state or "").split()
        return s[0] if s else ""

    def words(self):
        return first_words(self.output())

    def shown_words(self):
        """For the table: the output's words, else Slurm's reason or state text."""
        reason = self.reason if self.reason not in ("", "None") else ""
        return self.words() or reason or self.acct.get("State", "") or self.submit_error

    def reason_text(self):
        return " | ".join(x for x in (self.words(), self.reason, self.acct.get("Reason", ""),
                                      self.acct.get("State", ""), self.submit_error) if x)


# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------

class Soak:
    def __init__(self, args, cluster, items, jobs, faults):
        self.args, self.cluster = args, cluster
        self.items, self.faults = items, faults
        self.run_id = time.strftime("%Y%m%d-%H%M%S")
        self.prefix = f"soak-{self.run_id}-"
        self.work = f"/home/{USER}/svm-soak/{self.run_id}"
        self.report_dir = f"{SVM_LOG}/soak/{self.run_id}"
        self.runs = {j.idx: JobRun(spec=j, name=f"{self.prefix}{j.idx:03d}") for j in jobs}
        self.by_name = {r.name: r for r in self.runs.values()}
        self.lock = threading.RLock()
        self.journal = Journal()
        self.logs = SlurmdLogs(cluster)
        self.t0 = time.monotonic()
        self.stop = threading.Event()
        self.paused = threading.Event()      # set: no submissions (slurmctld down, quiesce)
        self.fault_thread = None
        self.fault_log = []                  # lines
        self.fault_results = {}              # num -> dict
        self.drains = []                     # (t, node, state, reason) first seen
        self._seen_drain = set()
        self.poll_errors = collections.Counter()
        self.rng = random.Random(args.seed * 7919 + 1)

    # -- time and log ---------------------------------------------------------------------------
    def now(self):
        return time.monotonic() - self.t0

    def say(self, text):
        line = f"[+{self.now():7.1f}s] {text}"
        print(line, flush=True)
        return line

    def fault_say(self, num, text):
        line = self.say(f"fault {num}: {text}")
        with self.lock:
            self.fault_log.append(line)
        with open(self.report_dir + "/faults.log", "a") as f:
            f.write(line + "\n")

    # -- set-up ---------------------------------------------------------------------------------
    def setup(self):
        os.makedirs(self.report_dir, exist_ok=True)
        DAEMON_LOG[0] = self.report_dir + "/daemons.log"
        run(["install", "-d", "-o", USER, "-g", USER, "-m", "0755",
             f"/home/{USER}/svm-soak", self.work], check=True)
        script = self.work + "/job.sh"
        with open(script, "w") as f:
            f.write("#!/bin/sh\n"
                    "# A soak job: says it started, runs a step in every VM of a 2-node job,\n"
                    "# sleeps $1 seconds, says it ended.\n"
                    "echo \"soak-start $SLURM_JOB_ID $(hostname)\"\n"
                    "if [ \"${SLURM_NNODES:-1}\" -gt 1 ]; then srun hostname || exit 1; fi\n"
                    "sleep \"$1\"\n"
                    "echo \"soak-end $SLURM_JOB_ID\"\n")
        os.chmod(script, 0o755)
        run(["chown", f"{USER}:{USER}", script])
        self.journal.set("job_prefix", self.prefix)
        self.journal.set("run", self.run_id)
        self.logs.refresh(self.now())

    # -- submission -----------------------------------------------------------------------------
    def in_flight(self):
        with self.lock:
            return sum(r.spec.nodes for r in self.runs.values()
                       if r.submitted is not None and r.done is None and not r.stuck)

    def wait_capacity(self, nodes):
        while not self.stop.is_set():
            busy = self.in_flight()
            # A 2-node job fits an empty run whatever --concurrency says.
            if not self.paused.is_set() and (busy + nodes <= self.args.concurrency or busy == 0):
                return True
            time.sleep(0.5)
        return False

    def srun_words(self, s, r):
        words = [f"-J {r.name}", f"-t {s.limit}"]
        if s.nodes > 1:
            words.append(f"-N {s.nodes}")
        if s.cpus > 1:
            words.append(f"-c {s.cpus}")
        mem = r.mem or s.mem
        if mem:
            words.append(f"--mem={mem}")
        if s.node:
            words.append(f"-w {s.node}")
        words.append(f"--vm-image={s.image}")
        return " ".join(words)

    def submit(self, r):
        s = r.spec
        with self.lock:
            r.submitted = self.now()
        if s.kind == "batch":
            cmd = f"sbatch --parsable {self.srun_words(s, r)} -o out-%j.txt job.sh {s.sleep}"
            deadline = time.monotonic() + 180
            while True:
                rc, out, err = run(user_argv(self.work, cmd), timeout=60)
                if rc == 0 and out.strip():
                    with self.lock:
                        r.jobid = out.strip().split(";")[0]
                        r.out = f"{self.work}/out-{r.jobid}.txt"
                    return
                if time.monotonic() > deadline or not re.search(
                        r"contact slurm controller|Socket timed out|temporarily|Connection refused",
                        err):
                    with self.lock:
                        r.submit_error = (err.strip().splitlines() or ["?"])[-1][:200]
                        r.done = self.now()
                    self.say(f"job {s.idx}: sbatch failed: {r.submit_error}")
                    return
                time.sleep(3)
        r.out = f"{self.work}/{s.kind}-{s.idx:03d}.txt"
        tasks_cmd = ("sh -c 'echo soak-start $SLURM_JOB_ID $(hostname); sleep %d; "
                     "echo soak-end $SLURM_JOB_ID'" % s.sleep)
        if s.kind == "step":
            argv = user_argv(self.work, f"srun {self.srun_words(s, r)} {tasks_cmd}")
        else:
            argv = [sys.executable, os.path.abspath(__file__), "--pty-session", r.out,
                    str(s.sleep), "--"] + user_argv(
                        self.work, f"exec srun --pty {self.srun_words(s, r)} sh")
        with open(r.out, "ab") as out:
            r.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        threading.Thread(target=self._reap, args=(r,), daemon=True).start()

    def _reap(self, r):
        rc = r.proc.wait()
        with self.lock:
            r.rc = rc
        # The job's id comes from squeue by its name; a srun refused before it had a job has none.
        for _ in range(20):
            if r.jobid or self.stop.is_set():
                return
            time.sleep(1)
        with self.lock:
            if not r.jobid and r.done is None:
                r.submit_error = first_words(r.output()) or f"srun exited {rc} without a job"
                r.done = self.now()

    # -- the poller -----------------------------------------------------------------------------
    def poll_once(self):
        now = self.now()
        self.logs.refresh(now)
        # The name last: a job name may hold any character.
        rc, out, _ = run(["squeue", "-h", "-u", USER, "-t", "all", "-o", "%i|%T|%r|%N|%j"],
                         timeout=30)
        if rc != 0:
            self.poll_errors["squeue"] += 1
        else:
            with self.lock:
                for line in out.splitlines():
                    parts = line.split("|", 4)
                    if len(parts) != 5:
                        continue
                    r = self.by_name.get(parts[4])
                    if r is None:
                        continue
                    if not r.jobid:
                        r.jobid = parts[0]
                    if r.jobid != parts[0]:
                        continue
                    r.state, r.reason, r.nodes = parts[1], parts[2], parts[3]
                    r.last_seen = now
                    if r.state == "PENDING":
                        r.pending_since = r.pending_since or now
                        if (now - r.pending_since > 120 and
                                re.search(r"held|Held|requeue", r.reason) and not r.stuck):
                            r.stuck = True
                            self.say(f"job {r.spec.idx} ({r.jobid}) is held: {r.reason}")
                    else:
                        r.pending_since = None
                    if r.state in FINAL_STATES and r.done is None:
                        r.done = now
                # A job past its time limit by more than Slurm's kill and the plugin's grace can
                # take is wedged: it no longer holds back the run, and the checks name it.
                for r in self.runs.values():
                    if r.done is None and r.submitted is not None and not r.stuck and \
                            now > r.submitted + r.spec.limit * 60 + 300:
                        r.stuck = True
                        self.say(f"job {r.spec.idx} ({r.jobid or r.name}) has not ended 5 min "
                                 f"past its time limit: {r.state} {r.reason}")
        states = node_states()
        if states is not None:
            for node, (state, reason) in states.items():
                if "drain" in state or state.startswith("down") or state.endswith("*"):
                    key = (node, state, reason)
                    if key not in self._seen_drain:
                        self._seen_drain.add(key)
                        self.drains.append((now, node, state, reason))
                        self.say(f"node {node} is {state}: {reason or '(no reason)'}")

    def poller(self):
        while not self.stop.is_set():
            try:
                self.poll_once()
            except Exception as e:  # a poll must never end the run
                self.poll_errors[type(e).__name__] += 1
            self.stop.wait(2)

    # -- the main loop --------------------------------------------------------------------------
    def main_loop(self):
        gap_rng = random.Random(self.args.seed)
        submitted = 0
        last_status = 0
        for what, x in self.items:
            if self.stop.is_set():
                break
            if what == "job":
                r = self.runs[x.idx]
                if not self.wait_capacity(x.nodes):
                    break
                self.submit(r)
                submitted += 1
                if self.now() - last_status > 30:
                    last_status = self.now()
                    self.status_line(submitted)
                time.sleep(gap_rng.uniform(0.3, 1.5))
            else:
                self.wait_fault_worker()
                if x.kind == "fs_full":
                    self.run_fault(x)  # here: it stops the submissions while it lasts
                else:
                    self.fault_thread = threading.Thread(target=self.run_fault, args=(x,),
                                                         daemon=True)
                    self.fault_thread.start()
        self.wait_fault_worker()

    def wait_fault_worker(self):
        if self.fault_thread is not None:
            while self.fault_thread.is_alive():
                self.fault_thread.join(1)

    def status_line(self, submitted):
        with self.lock:
            done = [r for r in self.runs.values() if r.done is not None]
            states = collections.Counter(r.final_state() or "none" for r in done)
        self.say(f"{submitted}/{len(self.runs)} submitted, {self.in_flight()} VMs in flight, "
                 f"{len(done)} done ({', '.join(f'{v} {k}' for k, v in sorted(states.items()))})")

    def wait_all_done(self):
        """Until every job ended, or is wedged (see poll_once)."""
        last = self.now()
        while not self.stop.is_set():
            if self.now() - last > 60:
                last = self.now()
                self.status_line(sum(1 for r in self.runs.values() if r.submitted is not None))
            with self.lock:
                left = [r for r in self.runs.values()
                        if r.submitted is not None and r.done is None and not r.stuck]
                procs = [r for r in self.runs.values() if r.proc is not None and r.rc is None]
            if not left and not procs:
                return not any(r.stuck and r.done is None for r in self.runs.values())
            self.done_by_sacct(left)
            time.sleep(2)
        return False

    def done_by_sacct(self, left):
        """A job slurmctld no longer lists (purged, or lost in a restart): sacct says its end."""
        now = self.now()
        gone = [r for r in left if r.jobid and r.submitted is not None and now - r.submitted > 60
                and (r.last_seen is None or now - r.last_seen > 60)]
        if not gone:
            return
        rc, out, _ = run(["sacct", "-X", "-n", "-P", "-j", ",".join(r.jobid for r in gone),
                          "-o", "JobID,State"], timeout=60)
        states = dict(l.split("|", 1) for l in out.splitlines() if l.count("|") == 1)
        with self.lock:
            for r in gone:
                st = states.get(r.jobid, "").split()
                if st and st[0] in FINAL_STATES and r.done is None:
                    r.state, r.done = st[0], now

    # -- faults ---------------------------------------------------------------------------------
    def run_fault(self, f):
        res = {"num": f.num, "kind": f.kind, "t0": None, "t1": None, "targets": [],
               "did": "", "verdict": "", "notes": []}
        with self.lock:
            self.fault_results[f.num] = res
        time.sleep(f.delay)
        res["t0"] = self.now()
        try:
            getattr(self, "fault_" + f.kind)(f, res)
        except Exception as e:
            # Judged on what it did before the error, if anything.
            if not res["did"] and not res["targets"]:
                res["verdict"] = "not injected"
            res["notes"].append(f"the soak's own error: {type(e).__name__}: {e}")
            self.fault_say(f.num, f"{f.kind}: the soak's own error: {type(e).__name__}: {e}")
        res["t1"] = self.now()

    def victim(self, f, i=0):
        return self.runs[f.victims[i].idx]

    def wait_done(self, r, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            with self.lock:
                if r.done is not None:
                    return True
            time.sleep(1)
        return False

    def running_vm_jobs(self):
        """[(run, [domain])] of soak jobs whose task is running in their VMs now."""
        live = live_domains()
        out = []
        with self.lock:
            runs = [r for r in self.runs.values() if r.jobid and r.done is None
                    and r.state == "RUNNING" and r.spec.role in ("mix", "bait") and not r.hits]
        for r in runs:
            text = r.output()
            if not START_RE.search(text) or END_RE.search(text):
                continue
            doms = sorted(d for d in live if d.startswith(f"svm-{r.jobid}-"))
            if doms:
                out.append((r, doms))
        return out

    def pick_target(self, f, timeout=240):
        bait = self.runs.get(f.after_job)
        rng = random.Random(self.args.seed * 1000 + f.num)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            cands = self.running_vm_jobs()
            for r, doms in cands:
                if r is bait:
                    return r, rng.choice(doms)
            long_ones = [(r, d) for r, d in cands if r.spec.sleep >= 15]
            if long_ones and time.monotonic() > deadline - timeout + 90:
                r, doms = rng.choice(sorted(long_ones, key=lambda c: c[0].spec.idx))
                return r, rng.choice(doms)
            time.sleep(1)
        return None, None

    def target_done(self, f, res, r, timeout):
        t_hit = self.now()
        if self.wait_done(r, timeout):
            res["notes"].append(f"job {r.jobid} ended {self.now() - t_hit:.1f} s after the fault")
        else:
            res["notes"].append(f"job {r.jobid} had not ended {timeout} s after the fault")

    def fault_qemu_kill(self, f, res):
        r, dom = self.pick_target(f)
        if r is None:
            res["verdict"] = "not injected"
            res["did"] = "no running VM job to hit"
            self.fault_say(f.num, "qemu_kill: not injected: no running VM job")
            return
        pid = qemu_pid_of(dom)
        if pid is None:
            res["verdict"] = "not injected"
            res["did"] = f"no QEMU for {dom}"
            return
        r.hits.append(f.num)
        res["targets"].append(r.spec.idx)
        os.kill(pid, signal.SIGKILL)
        res["did"] = f"kill -9 QEMU {pid} of {dom}"
        self.fault_say(f.num, f"qemu_kill: job {r.jobid} ({r.spec.describe()}): {res['did']}")
        self.target_done(f, res, r, 240)

    def fault_qemu_stop(self, f, res):
        r, dom = self.pick_target(f)
        if r is None:
            res["verdict"] = "not injected"
            res["did"] = "no running VM job to hit"
            self.fault_say(f.num, "qemu_stop: not injected: no running VM job")
            return
        pid = qemu_pid_of(dom)
        start = proc_start(pid) if pid else None
        if pid is None or start is None:
            res["verdict"] = "not injected"
            res["did"] = f"no QEMU for {dom}"
            return
        then = f.params["then"]
        if then == "wait" and r.spec.idx != f.after_job:
            then = "scancel"  # only the bait has a short time limit to be left to
            res["notes"].append("its bait was not running: another job, scancelled instead of waited for")
        r.hits.append(f.num)
        res["targets"].append(r.spec.idx)
        self.journal.add("stopped_qemu", {"pid": pid, "start": start, "dom": dom})
        os.kill(pid, signal.SIGSTOP)
        res["did"] = f"kill -STOP QEMU {pid} of {dom}"
        self.fault_say(f.num, f"qemu_stop: job {r.jobid} ({r.spec.describe()}): {res['did']}, "
                              f"then {then}")
        if then == "scancel":
            time.sleep(15)
            run(["scancel", r.jobid])
            res["did"] += "; scancel 15 s later"
            self.fault_say(f.num, f"qemu_stop: scancel {r.jobid} (its QEMU still stopped)")
            self.target_done(f, res, r, 240)
        else:
            res["did"] += "; left to the job's time limit"
            self.target_done(f, res, r, r.spec.limit * 60 + 240)
        if proc_start(pid) == start:
            res["notes"].append(f"QEMU {pid} still there ({proc_state(pid)}) after the job ended")

    AGENT_KILL = ('echo "svm-soak: killing the agent"; sleep 0.5; '
                  'for d in /proc/[0-9]*; do '
                  '[ "$(cat "$d/comm" 2>/dev/null)" = slurm-vm-agent ] && kill -9 "${d#/proc/}"; '
                  'done; sleep 1; echo "svm-soak: still here"')

    def fault_agent_kill(self, f, res):
        r, dom = self.pick_target(f)
        if r is None:
            res["verdict"] = "not injected"
            res["did"] = "no running VM job to hit"
            self.fault_say(f.num, "agent_kill: not injected: no running VM job")
            return
        # Root on the host uses the job's own channel: the exec client run as root asks the
        # agent for uid 0, i.e. the guest's root, as root inside a user's guest could.
        argv = [self.cluster.exec_client, "--channel-dir", f"{self.cluster.run_dir}/{dom}",
                "--ports", str(self.cluster.exec_ports), "--cwd", "/", "--",
                "/bin/sh", "-c", self.AGENT_KILL]
        rc, out, err = run(argv, timeout=30, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        if "killing the agent" not in out:
            res["verdict"] = "not injected"
            res["did"] = f"slurm-vm-exec as root into {dom}: exit {rc}: {first_words(err) or out[:100]}"
            self.fault_say(f.num, f"agent_kill: not injected: {res['did']}")
            return
        r.hits.append(f.num)
        res["targets"].append(r.spec.idx)
        res["did"] = (f"kill -9 of slurm-vm-agent in {dom} as the guest's root "
                      f"(our channel: exit {rc}{', ' + first_words(err) if err.strip() else ''})")
        self.fault_say(f.num, f"agent_kill: job {r.jobid} ({r.spec.describe()}): {res['did']}")
        self.target_done(f, res, r, 240)

    def busy_node(self, rng):
        cands = sorted({d.split("-", 2)[2] for _, doms in self.running_vm_jobs() for d in doms})
        return rng.choice(cands) if cands else rng.choice(self.cluster.nodes)

    def fault_slurmd_restart(self, f, res):
        rng = random.Random(self.args.seed * 1000 + f.num)
        node = self.busy_node(rng)
        pid = slurmd_pid(self.cluster, node)
        if pid is None:
            res["verdict"] = "not injected"
            res["did"] = f"no slurmd of {node} found"
            return
        res["node"] = node
        self.journal.add("slurmd_down", node)
        os.kill(pid, signal.SIGKILL)
        for _ in range(50):
            if not is_daemon(pid, "slurmd"):
                break
            time.sleep(0.2)
        self.fault_say(f.num, f"slurmd_restart: kill -9 slurmd {pid} of {node}; "
                              f"down {f.params['down_s']} s")
        time.sleep(f.params["down_s"])
        rc, err = start_slurmd(node)
        res["did"] = f"kill -9 slurmd of {node}, started again after {f.params['down_s']} s"
        if rc != 0:
            res["notes"].append(f"slurmd -N {node}: exit {rc}: {err.strip()[:200]}")
        time.sleep(1)
        if slurmd_pid(self.cluster, node):
            self.journal.remove("slurmd_down", node)  # else the cleanup starts it again
        else:
            res["notes"].append(f"slurmd of {node} is not running after its start")
        for _ in range(90):
            st = (node_states() or {}).get(node, ("?", ""))[0]
            if not st.endswith("*") and not st.startswith("down"):
                break
            time.sleep(1)
        self.fault_say(f.num, f"slurmd_restart: slurmd of {node} is back")

    def fault_libvirtd_restart(self, f, res):
        self.journal.add("daemons_down", "libvirtd")
        self.fault_say(f.num, "libvirtd_restart: contrib/cluster.sh restart-libvirt")
        t = time.monotonic()
        rc, out = run_daemon([REPO + "/contrib/cluster.sh", "restart-libvirt"], timeout=300)
        if run(VIRSH + ["version"], timeout=30)[0] == 0:
            self.journal.remove("daemons_down", "libvirtd")  # else the cleanup tries again
        res["did"] = f"libvirtd restarted in {time.monotonic() - t:.1f} s"
        if rc != 0:
            res["notes"].append(f"restart-libvirt: exit {rc}: {out[-200:]}")
        self.fault_say(f.num, f"libvirtd_restart: {res['did']}")

    def fault_slurmctld_restart(self, f, res):
        pid = slurmctld_pid(self.cluster)
        if pid is None:
            res["verdict"] = "not injected"
            res["did"] = "no slurmctld found"
            return
        self.paused.set()  # sbatch/srun would fail while it is away
        try:
            self.journal.add("daemons_down", "slurmctld")
            if with_systemd():
                run_daemon(["systemctl", "stop", "slurmctld"], timeout=120)
            else:
                os.kill(pid, signal.SIGTERM)
                for _ in range(300):
                    if not is_daemon(pid, "slurmctld"):
                        break
                    time.sleep(0.2)
            self.fault_say(f.num, f"slurmctld_restart: slurmctld {pid} stopped; "
                                  f"down {f.params['down_s']} s")
            time.sleep(f.params["down_s"])
            rc, err = start_slurmctld()
            if rc != 0:
                res["notes"].append(f"slurmctld: exit {rc}: {err.strip()[:200]}")
            for _ in range(120):
                if "UP" in run(["scontrol", "ping"], timeout=20)[1]:
                    self.journal.remove("daemons_down", "slurmctld")  # else the cleanup starts it
                    break
                time.sleep(1)
            else:
                res["notes"].append("slurmctld did not answer within 2 min of its start")
            res["did"] = f"slurmctld stopped (SIGTERM), started again after {f.params['down_s']} s"
            self.fault_say(f.num, "slurmctld_restart: slurmctld answers again")
        finally:
            self.paused.clear()

    def fault_slurmdbd_outage(self, f, res):
        self.journal.add("daemons_down", "slurmdbd")
        rc, out = run_daemon([REPO + "/contrib/cluster.sh", "stop-slurmdbd"], timeout=120)
        self.fault_say(f.num, f"slurmdbd_outage: slurmdbd stopped for {f.params['down_s']} s")
        time.sleep(f.params["down_s"])
        rc, out = run_daemon([REPO + "/contrib/cluster.sh", "start-slurmdbd"], timeout=180)
        if rc == 0:
            self.journal.remove("daemons_down", "slurmdbd")  # else the cleanup tries again
        res["did"] = f"slurmdbd away for {f.params['down_s']} s"
        if rc != 0:
            res["notes"].append(f"start-slurmdbd: exit {rc}: {out[-200:]}")
        self.fault_say(f.num, "slurmdbd_outage: slurmdbd started again")

    def fault_scancel_boot(self, f, res):
        r = self.victim(f)
        r.hits.append(f.num)
        res["targets"].append(r.spec.idx)
        self.submit(r)
        deadline = time.monotonic() + 600
        phase = ""
        while time.monotonic() < deadline and not self.stop.is_set():
            if r.jobid:
                doms = [d for d in live_domains() if d.startswith(f"svm-{r.jobid}-")]
                self.logs.refresh(self.now())
                ready = self.logs.of(r.jobid, "ready")
                if doms and not ready:
                    phase = f"its VM {doms[0]} booting (no 'ready' line yet)"
                    break
                if ready or r.done is not None:
                    phase = "missed: the VM was ready before the soak saw it boot"
                    break
            time.sleep(0.1)
        if r.done is None and r.jobid:
            run(["scancel", r.jobid])
        res["did"] = f"scancel {r.jobid or '?'}: {phase or 'no VM seen in time'}"
        if phase.startswith("missed") or not phase:
            res["verdict"] = "missed"
        self.fault_say(f.num, f"scancel_boot: job {r.jobid}: {res['did']}")
        self.target_done(f, res, r, 300)

    def fresh_memory(self, r):
        """--mem for a debian11 VM size no snapshot of this host has: the save must happen."""
        shapes = warm_shapes(self.cluster.warm_dir, r.spec.image)
        rng = random.Random(self.args.seed * 31 + r.spec.idx)
        for _ in range(200):
            mem = 1024 + 8 * rng.randint(1, 120)
            if (r.spec.cpus, mem - self.cluster.overhead) not in shapes:
                return mem
        return 1024 + 8 * rng.randint(1, 120)

    def fault_scancel_save(self, f, res):
        r = self.victim(f)
        r.mem = self.fresh_memory(r)
        r.hits.append(f.num)
        res["targets"].append(r.spec.idx)
        self.submit(r)
        image_dir = f"{self.cluster.warm_dir}/{r.spec.image}"
        guest_kib = (r.mem - self.cluster.overhead) * 1024
        deadline = time.monotonic() + 900
        phase, saw_make = "", False
        while time.monotonic() < deadline and not self.stop.is_set():
            # The victim's own snapshot VM: svm-warm-<key>-<slot>, of the victim's memory size
            # (no other job asks for it); saving while libvirt has it paused or its state.part is
            # being written.
            makers = [d for d in live_domains() if d.startswith("svm-warm-") and
                      f"<memory unit='KiB'>{guest_kib}</memory>" in read_text(f"{LIBVIRT_RUN}/{d}.xml")]
            saw_make = saw_make or bool(makers)
            parts = [p for d in makers for p in glob.glob(
                f"{image_dir}/*/{d[len('svm-warm-'):].rsplit('-', 1)[0]}/slot-*/state.part")]
            paused = [d for d in makers if domain_paused(d)]
            if parts or paused:
                phase = f"saving ({', '.join(paused) or parts[0]})"
                break
            if r.jobid:
                self.logs.refresh(self.now())
                if self.logs.of(r.jobid, "ready") or r.done is not None:
                    phase = ("missed: the VM was ready before a save was seen"
                             f"{'' if saw_make else ' (no snapshot VM seen: a snapshot of this size existed?)'}")
                    break
            time.sleep(0.1)
        if r.done is None and r.jobid:
            run(["scancel", r.jobid])
        res["did"] = f"scancel {r.jobid or '?'} (--mem={r.mem}): {phase or 'no save seen in time'}"
        if phase.startswith("missed") or not phase:
            res["verdict"] = "missed"
        self.fault_say(f.num, f"scancel_save: job {r.jobid}: {res['did']}")
        self.target_done(f, res, r, 600)
        for _ in range(120):
            if not [d for d in live_domains() if d.startswith("svm-warm-") and
                    f"<memory unit='KiB'>{guest_kib}</memory>" in read_text(f"{LIBVIRT_RUN}/{d}.xml")] \
                    and not glob.glob(f"{image_dir}/*/*/slot-*/state.part"):
                break
            time.sleep(1)
        else:
            res["notes"].append("the snapshot's VM or its partial state file was still there "
                                "2 min after the job ended")

    def fault_snapshot_corrupt(self, f, res):
        r = self.victim(f)
        shape = (1, self.cluster.def_mem_per_cpu - self.cluster.overhead)  # a 1-CPU tiny job's VM
        slots = []
        for _ in range(180):
            slots = warm_slots(self.cluster.warm_dir, "tiny", *shape)
            if slots:
                break
            time.sleep(1)
        corrupted, busy = [], []
        for slot, lock_path in slots:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                busy.append(os.path.basename(slot))
                os.close(fd)
                continue
            try:  # under the slot's own lock: no prolog restores it meanwhile
                state = slot + "/state"
                if f.params["how"] == "header":
                    with open(state, "r+b") as s:
                        s.write(b"SOAK-CORRUPTED!!")
                else:
                    os.truncate(state, os.path.getsize(state) * 6 // 10)
                corrupted.append(slot.replace(self.cluster.warm_dir + "/", ""))
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        if not corrupted:
            res["verdict"] = "not injected"
            res["did"] = (f"no free tiny snapshot of {shape[1]} MiB"
                          f"{' (in use: ' + ', '.join(busy) + ')' if busy else ''}")
            self.fault_say(f.num, f"snapshot_corrupt: not injected: {res['did']}")
            return
        res["did"] = (f"{f.params['how']} of {len(corrupted)} state file(s): "
                      f"{', '.join(corrupted)}{'; in use, left: ' + ', '.join(busy) if busy else ''}")
        res["t_corrupt"] = self.now()
        self.fault_say(f.num, f"snapshot_corrupt: {res['did']}")
        r.hits.append(f.num)
        res["targets"].append(r.spec.idx)
        self.submit(r)
        self.target_done(f, res, r, 300)

    def quiesce(self, timeout=480):
        """Waits until no VM of any job runs on this host (the jobs folder is every node's)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            with self.lock:
                busy = [r for r in self.runs.values()
                        if r.submitted is not None and r.done is None and not r.stuck]
            what = leftovers_now(self.cluster)
            if not busy and not any(what.values()):
                return ""
            time.sleep(2)
        with self.lock:
            busy = [r.jobid or r.name for r in self.runs.values()
                    if r.submitted is not None and r.done is None and not r.stuck]
        return f"jobs still running: {' '.join(busy)}; {leftovers_now(self.cluster)}"

    def fault_fs_full(self, f, res):
        self.paused.set()
        try:
            self.fault_say(f.num, "fs_full: waiting until no VM runs (the jobs folder is shared)")
            why = self.quiesce()
            res["t0"] = self.now()
            if why:
                res["verdict"] = "not injected"
                res["did"] = f"could not quiesce: {why}"
                self.fault_say(f.num, f"fs_full: not injected: {why}")
                return
            mount = self.mount_full(res)
            if mount is None:
                return
            try:
                nodes = list(self.cluster.nodes)
                random.Random(self.args.seed * 1000 + f.num).shuffle(nodes)
                victims = [self.victim(f, i) for i in range(len(f.victims))]
                for i, r in enumerate(victims):
                    r.spec.node = nodes[i % len(nodes)]
                    r.hits.append(f.num)
                    res["targets"].append(r.spec.idx)
                    self.submit(r)
                for r in victims:
                    self.wait_done(r, 300)
                for _ in range(60):  # the epilogs
                    if not live_domains() and not glob.glob(self.cluster.run_dir + "/*"):
                        break
                    time.sleep(1)
                try:
                    inside = [n for n in os.listdir(self.cluster.jobs_dir)
                              if n != "lost+found" and not n.startswith("soak-fill")]
                except OSError as e:
                    inside = [f"(cannot list it: {e})"]
                if inside:
                    res["notes"].append(f"left in the full file system: {', '.join(inside)}")
            finally:
                undo_mount(mount, lambda s: self.fault_say(f.num, s))
                self.journal.remove("mounts", mount)
                self.fault_say(f.num, "fs_full: unmounted")
        finally:
            self.paused.clear()

    def mount_full(self, res):
        target = self.cluster.jobs_dir
        os.makedirs(target, exist_ok=True)
        image = f"/var/tmp/svm-soak-{self.run_id}.img"
        mount = {"target": target, "image": image}
        how = "ext4 on a 16 MiB loop device"
        ok = False
        if run(["truncate", "-s", "16M", image])[0] == 0 and \
                run(["mkfs.ext4", "-q", "-F", "-m", "0", "-N", "64", image], timeout=60)[0] == 0:
            rc, loop, _ = run(["losetup", "-f", "--show", image])
            if rc == 0 and loop.strip():
                mount["loop"] = mount["source"] = loop.strip()
                self.journal.add("mounts", mount)
                ok = run(["mount", mount["loop"], target])[0] == 0
        if not ok:
            undo_mount(mount)
            self.journal.remove("mounts", mount)
            mount = {"target": target, "source": "svm-soak-full"}
            how = "a 4 MiB tmpfs with 32 inodes (no loop device)"
            self.journal.add("mounts", mount)
            if run(["mount", "-t", "tmpfs", "-o", "size=4m,nr_inodes=32,mode=0755", "svm-soak-full",
                    target])[0] != 0:
                self.journal.remove("mounts", mount)
                res["verdict"] = "not injected"
                res["did"] = "could not mount a small file system over the jobs folder"
                return None
        os.chmod(target, 0o755)
        # Full: no block and no inode left (as a user's jobs could leave it).
        run(["dd", "if=/dev/zero", f"of={target}/soak-fill", "bs=1M"], timeout=60)
        run(["dd", "if=/dev/zero", f"of={target}/soak-fill.tail", "bs=4k"], timeout=60)
        for i in range(1000):
            try:
                open(f"{target}/soak-fill.{i}", "w").close()
            except OSError:
                break
        st = os.statvfs(target)
        res["did"] = (f"{how} over {target}, filled: {st.f_bavail * st.f_frsize // 1024} KiB "
                      f"and {st.f_favail} inodes free")
        self.fault_say(res["num"], f"fs_full: {res['did']}")
        return mount

    def fault_guest_panic(self, f, res):
        r = self.victim(f)
        r.hits.append(f.num)
        res["targets"].append(r.spec.idx)
        self.submit(r)
        res["did"] = f"a {r.spec.kind} job of image 'panics'"
        self.fault_say(f.num, f"guest_panic: job {r.jobid or '(srun)'}: {res['did']}")
        self.target_done(f, res, r, 300)

    # -- the end --------------------------------------------------------------------------------
    def collect_accounting(self, timeout=240):
        """sacct's allocation record of every job with an id, waiting for a final one."""
        ids = [r.jobid for r in self.runs.values() if r.jobid]
        fields = "JobID,JobName,State,ExitCode,Reason,NodeList,Start,End,ElapsedRaw,AdminComment"
        deadline = time.monotonic() + timeout
        while True:
            got = {}
            for i in range(0, len(ids), 100):
                rc, out, _ = run(["sacct", "-X", "-n", "-P", "-j", ",".join(ids[i:i + 100]),
                                  "-o", fields], timeout=120)
                for line in out.splitlines():
                    parts = line.split("|")
                    if len(parts) >= 10:
                        got[parts[0]] = dict(zip(fields.split(","), parts))
            with self.lock:
                for r in self.runs.values():
                    if r.jobid in got:
                        r.acct = got[r.jobid]
            # Jobs slurmctld says ended (a held job never will: the final-state check names it).
            pending = [r for r in self.runs.values() if r.jobid and r.state in FINAL_STATES and (
                r.jobid not in got or got[r.jobid]["State"].split()[0] not in FINAL_STATES)]
            if not pending or time.monotonic() > deadline:
                return
            time.sleep(5)

    def jsonl_records(self):
        path = self.cluster.log_dir + "/vm-jobs.jsonl"
        ids = {r.jobid for r in self.runs.values() if r.jobid}
        have = set()
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if str(rec.get("jobid")) in ids:
                        have.add((str(rec["jobid"]), rec.get("node", "")))
        except OSError:
            pass
        return have


def leftovers_now(cluster):
    """The quick leftovers (no virsh): domains by libvirt's files, job and channel folders."""
    return {k: v for k, v in {
        "domains": sorted(live_domains()),
        "job folders": sorted(glob.glob(cluster.jobs_dir + "/*")),
        "channel folders": sorted(glob.glob(cluster.run_dir + "/*")),
    }.items() if v}


# ---------------------------------------------------------------------------------------------
# What happened: each job's verdict, each fault's, and the checks.
# ---------------------------------------------------------------------------------------------

def fault_window(res):
    """The time a fault's effects may show in jobs: from a little before it to 30 s after."""
    return (res["t0"] or 0) - 5, (res["t1"] or res["t0"] or 0) + 30


def overlaps(r, window):
    if r.submitted is None:
        return False
    end = r.done if r.done is not None else float("inf")
    return r.submitted <= window[1] and end >= window[0]


def judge_job(r, faults_by_num, results):
    """(ok, why, explained_by): whether the job ended as the issue wants, and which fault
    explains a job that did not complete."""
    state = r.final_state()
    text = r.reason_text()
    if not r.jobid:
        return False, f"never got a job id: {r.submit_error or '?'}", []
    if state not in FINAL_STATES:
        return False, f"not in a final state: {state or '?'} {r.reason}", []
    if r.hits:
        for num in r.hits:
            kind = faults_by_num[num].kind
            states, words = EXPECT[kind]
            if state == "COMPLETED":
                return True, "completed", [num]
            if re.search(words, text, re.I) or (state in ("CANCELLED", "TIMEOUT") and
                                               state in (states or ())):
                return True, f"{state}: names {kind}", [num]
        return False, f"{state} without words naming its fault ({text[:200]})", list(r.hits)
    if state == "COMPLETED":
        out = r.output()
        if r.spec.kind == "pty":
            ok = "pty-driver: ok" in out
        else:
            ok = bool(END_RE.search(out))
        return (True, "completed", []) if ok else (
            False, f"COMPLETED without its last line ({first_words(out)[:120]})", [])
    explained = []
    for num, res in results.items():
        if res["t0"] is None or not overlaps(r, fault_window(res)):
            continue
        kind = faults_by_num[num].kind
        words = EXPECT[kind][1]
        if re.search(words, text, re.I) or (kind == "slurmd_restart" and state == "NODE_FAIL"):
            explained.append(num)
    if explained:
        return True, f"{state}: named by a fault it ran through", explained
    return False, f"{state}, no fault explains it: {text[:200]}", []


def node_state_expected(soak, t, node, state):
    """A node that does not answer while its slurmd is away, or while slurmctld restarts, is
    the fault itself; a drain never is."""
    if "drain" in state:
        return False
    for res in soak.fault_results.values():
        if res["t0"] is None:
            continue
        a, b = fault_window(res)
        if a <= t <= b + 60 and (res["kind"] == "slurmctld_restart" or
                                 (res["kind"] == "slurmd_restart" and res.get("node") == node)):
            return True
    return False


def judge_faults(soak, verdicts):
    """Sets each fault's verdict and `effect` (what it did to its jobs)."""
    faults_by_num = {f.num: f for f in soak.faults}
    for num, res in soak.fault_results.items():
        f = faults_by_num[num]
        effect = []
        targets = [soak.runs[i] for i in res["targets"]]
        for r in targets:
            effect.append(f"job {r.jobid or '?'} {r.final_state() or '?'}"
                          f"{': ' + r.words()[:150] if r.final_state() != 'COMPLETED' and r.words() else ''}")
        window = fault_window(res) if res["t0"] is not None else None
        in_window = [r for r in soak.runs.values()
                     if window and overlaps(r, window) and not r.hits]
        failed = [r for r in in_window if r.final_state() not in ("COMPLETED", "")]
        if f.kind not in TARGETED and f.kind not in VICTIMS and window:
            effect.append(f"{len(in_window)} jobs ran in its window (to 30 s after it), "
                          f"{len(in_window) - len(failed)} of them completed")
        for r in failed:
            effect.append(f"job {r.jobid} {r.final_state()}: {r.words()[:150] or r.reason}")
        drains = [d for d in soak.drains if window and window[0] <= d[0] <= window[1] + 60]
        for t, node, state, reason in drains:
            effect.append(f"node {node} {state}: {reason}")
        res["effect"] = effect
        if not res["verdict"] and not targets and (f.kind in TARGETED or f.kind in VICTIMS):
            res["verdict"] = "not injected"
        if res["verdict"]:
            continue  # not injected, missed: said when it happened
        states, words = EXPECT[f.kind]
        bad = []
        for r in targets:
            st = r.final_state()
            if st not in FINAL_STATES:
                bad.append(f"job {r.jobid} not final ({st})")
            elif states and st not in states:
                bad.append(f"job {r.jobid} {st}, expected {'/'.join(sorted(states))}")
            elif st == "FAILED" and not re.search(words, r.reason_text(), re.I):
                bad.append(f"job {r.jobid} FAILED without naming the fault")
        if f.kind == "libvirtd_restart" and failed:
            bad.append(f"{len(failed)} job(s) failed while libvirtd restarted (the issue: it must cost nothing)")
        if f.kind == "slurmdbd_outage" and failed:
            bad.append(f"{len(failed)} job(s) failed while slurmdbd was away")
        if [d for d in drains if not node_state_expected(soak, d[0], d[1], d[2])]:
            bad.append(f"{len(drains)} node drain(s)/down in its window")
        if f.kind == "snapshot_corrupt" and res.get("t_corrupt") is not None:
            after = [(j, e) for j, e in soak.logs.all_of_kind("no_warm") if e[0] >= res["t_corrupt"]]
            broken = [r for r in soak.runs.values() if r.submitted is not None and
                      r.submitted >= res["t_corrupt"] and r.final_state() == "FAILED" and
                      re.search(words, r.reason_text(), re.I)]
            if after:
                j, e = after[0]
                effect.append(f"fell back to a boot: job {j}: {e[3].split(': ', 1)[-1][:160]}")
            if broken:
                bad.append(f"job(s) failed on the corrupted snapshot: {' '.join(r.jobid for r in broken)}")
            elif not after and not bad:
                res["verdict"] = "no effect seen"
                res["notes"].append("no job met a corrupted snapshot (another slot was free?)")
                continue
        if f.kind == "guest_panic":
            for r in targets:
                if "Kernel panic" not in r.output():
                    res["notes"].append(f"job {r.jobid}: the console's 'Kernel panic' is not in its output")
                el = r.acct.get("ElapsedRaw", "")
                if el.isdigit() and int(el) >= 10:
                    res["notes"].append(f"job {r.jobid} took {el} s to fail (the admin guide: about a second)")
        if bad:
            res["verdict"] = "unexpected: " + "; ".join(bad)
        elif failed and f.kind not in TARGETED:
            res["verdict"] = f"jobs failed in its window, named ({len(failed)})"
        else:
            res["verdict"] = "as expected"


def checks(soak, verdicts, leaks, acct_missing, jsonl_missing, spool):
    out = []

    def check(name, offenders, what, warn=False):
        out.append({"name": name, "ok": not offenders, "warn": warn and bool(offenders),
                    "count": len(offenders), "what": what, "offenders": offenders})

    runs = sorted(soak.runs.values(), key=lambda r: r.spec.idx)
    planned = [r for r in runs if r.submitted is not None]
    check("submitted", [f"job {r.spec.idx}: {r.submit_error}" for r in planned if not r.jobid],
          f"{sum(1 for r in planned if r.jobid)}/{len(runs)} planned jobs got a job id"
          f"{'' if len(planned) == len(runs) else f' ({len(runs) - len(planned)} never submitted)'}")
    check("final states", [f"{r.jobid} {r.final_state() or '?'} ({r.reason})" for r in planned
                           if r.jobid and r.final_state() not in FINAL_STATES],
          "every job COMPLETED, FAILED, CANCELLED, TIMEOUT or NODE_FAIL")
    check("reasons", [f"{r.jobid}: {verdicts[r.spec.idx][1]}" for r in planned
                      if r.jobid and r.final_state() in FINAL_STATES and not verdicts[r.spec.idx][0]],
          "a job that did not complete has words naming the fault that hit it; a completed one printed its last line")
    not_injected = [f"fault {n} {res['kind']}: {res['verdict']}: {res['did']}"
                    for n, res in sorted(soak.fault_results.items())
                    if res["verdict"] == "not injected" or res["verdict"].startswith("unexpected")]
    check("faults", not_injected, f"{len(soak.fault_results)} faults injected, each did what it should")
    soft = [f"fault {n} {res['kind']}: {res['verdict']}: {res['did']}"
            for n, res in sorted(soak.fault_results.items())
            if res["verdict"] in ("missed", "no effect seen")
            or res["verdict"].startswith("jobs failed in its window")]
    check("faults' aim", soft, "each fault met the phase it aims at (a miss is the soak's timing, "
                               "not the product's; failures a daemon's restart explains)", warn=True)
    for name in ("domains", "job folders", "channel folders", "warm-start partials",
                 "cgroup folders", "processes"):
        check("leaked " + name, leaks.get(name, []), {
            "domains": "no svm-* domain (virsh list --all)",
            "job folders": f"nothing in {soak.cluster.jobs_dir} (overlays, vm.json)",
            "channel folders": f"nothing in {soak.cluster.run_dir}",
            "warm-start partials": "no state.part or channels folder of a snapshot being made",
            "cgroup folders": "no job_* cgroup folder of a job that ended",
            "processes": "no QEMU of a svm- domain, virtiofsd or slurm-vm-exec",
        }[name])
    states = node_states() or {}
    now_bad = [f"{n} {s}: {why}" for n, (s, why) in sorted(states.items()) if not node_is_fine(s)]
    seen = [f"+{t:.0f}s {n} {s}: {why}" for t, n, s, why in soak.drains
            if not node_state_expected(soak, t, n, s)]
    check("nodes", now_bad + [f"seen during the run: {x}" for x in seen],
          "no node drained or down, now or at any time of the run (sinfo -R)")
    check("sacct", acct_missing, "every job with an id has its final record in sacct, with the slurm-vm AdminComment word")
    check("vm-jobs.jsonl", jsonl_missing + [f"still spooled: {s}" for s in spool],
          "every VM that became ready has its record in <log_dir>/vm-jobs.jsonl")
    return out


def finish(soak):
    """After the last job: leaks, accounting, verdicts; returns the report's data."""
    soak.say("all jobs ended; waiting for the epilogs, then checking leftovers")
    deadline = time.monotonic() + 180
    while True:
        rc, out, _ = run(["squeue", "-h", "-t", "RUNNING,COMPLETING,CONFIGURING", "-o", "%i"])
        running = set(out.split())
        leaks = leftovers(soak.cluster, running)
        if not any(leaks.values()) or time.monotonic() > deadline:
            break
        time.sleep(5)
    soak.say("accounting: waiting for sacct's final records")
    soak.collect_accounting()
    soak.logs.refresh(soak.now())
    faults_by_num = {f.num: f for f in soak.faults}
    verdicts = {r.spec.idx: judge_job(r, faults_by_num, soak.fault_results)
                for r in soak.runs.values() if r.submitted is not None}
    judge_faults(soak, verdicts)
    acct_missing = []
    for r in soak.runs.values():
        if not r.jobid or r.state not in FINAL_STATES:
            continue  # the final-state check names it
        if not r.acct:
            acct_missing.append(f"{r.jobid}: no record")
        elif r.acct["State"].split()[0] not in FINAL_STATES or (
                r.state in FINAL_STATES and r.acct["State"].split()[0] != r.state):
            acct_missing.append(f"{r.jobid}: sacct says {r.acct['State']}, slurmctld {r.state or '?'}")
        elif "slurm-vm:image=" not in r.acct.get("AdminComment", ""):
            acct_missing.append(f"{r.jobid}: no slurm-vm word in AdminComment ({r.acct.get('AdminComment', '')[:60]})")
    have = soak.jsonl_records()
    ready = {(j, e[1]) for j, e in soak.logs.all_of_kind("ready")
             if j in {r.jobid for r in soak.runs.values()}}
    jsonl_missing = [f"job {j} node {n}" for j, n in sorted(ready - have)]
    spool = sorted(os.listdir(soak.cluster.state_dir + "/records/pending")) \
        if os.path.isdir(soak.cluster.state_dir + "/records/pending") else []
    result = checks(soak, verdicts, leaks, acct_missing, jsonl_missing, spool)
    return verdicts, result


def report(soak, verdicts, result, took):
    lines = []
    w = lines.append
    runs = sorted((r for r in soak.runs.values() if r.submitted is not None), key=lambda r: r.spec.idx)
    w(f"slurm-vm soak {soak.run_id}: {len(runs)} jobs, seed {soak.args.seed}, "
      f"{len(soak.fault_results)} faults{' (quick)' if soak.args.quick else ''}, took {fmt_s(took)}")
    w(f"  job outputs: {soak.work}/   report: {soak.report_dir}/")
    w("")
    w("Jobs by final state and the words users got (first slurm-vm/srun line of the output, else Slurm's reason)")
    groups = collections.OrderedDict()
    for r in runs:
        st = r.final_state() or ("(no job)" if not r.jobid else "?")
        words = "" if st == "COMPLETED" else r.shown_words()
        key = (st, normalise(words))
        g = groups.setdefault(key, {"jobs": [], "words": words, "faults": set()})
        g["jobs"].append(r)
        g["faults"].update(verdicts.get(r.spec.idx, (0, 0, []))[2])
    w(f"  {'STATE':<11} {'JOBS':>4}  {'FAULTS':<10} {'EXAMPLE':<8} WORDS")
    for (st, _), g in sorted(groups.items(), key=lambda kv: (kv[0][0] != "COMPLETED", kv[0][0], -len(kv[1]["jobs"]))):
        faults = ",".join(str(n) for n in sorted(g["faults"])) or "-"
        w(f"  {st:<11} {len(g['jobs']):>4}  {faults:<10} {g['jobs'][0].jobid or '-':<8} {g['words'][:150]}")
    others = [r for r in runs if r.final_state() != "COMPLETED"]
    if others:
        w("")
        w("Every job that did not complete, with the first line a user got")
        for r in others:
            faults = ",".join(str(n) for n in verdicts.get(r.spec.idx, (0, 0, []))[2]) or "-"
            w(f"  {r.jobid or '-':<7} {r.final_state() or '?':<10} {r.spec.image:<8} "
              f"{r.spec.kind:<5} {r.spec.nodes}N  fault {faults:<6} "
              f"{r.shown_words()[:150]}")
        w("")
    by = collections.Counter((r.spec.image, r.spec.kind, r.spec.nodes) for r in runs)
    w("  mix: " + ", ".join(f"{v} {i} {k} {n}N" for (i, k, n), v in sorted(by.items())))
    starts = collections.Counter(e[2] for j, es in soak.logs.events.items() for e in es
                                 if e[2].startswith("ready_") or e[2] in ("snapshot", "no_warm"))
    w("  VM starts: " + ", ".join(f"{v} {k.replace('ready_', '')}" for k, v in sorted(starts.items())))
    w("")
    w("Faults (what each did, and what it did to its jobs)")
    faults_by_num = {f.num: f for f in soak.faults}
    for num, res in sorted(soak.fault_results.items()):
        hit = ", ".join(f"job {soak.runs[i].jobid or '?'}" for i in res["targets"]) or res.get("node", "") or "-"
        w(f"  {num:>2} +{fmt_s(res['t0']):>6} {res['kind']:<18} {hit:<22} {res['did'][:110]}")
        for e in res.get("effect", []):
            w(f"  {'':>30}-> {e[:160]}")
        for n in res["notes"]:
            w(f"  {'':>30}   ({n[:160]})")
        w(f"  {'':>30}   verdict: {res['verdict']}")
    never = [f for f in soak.faults if f.num not in soak.fault_results]
    if never:
        w(f"  never reached (the run ended first): {', '.join(f'{f.num} {f.kind}' for f in never)}")
    w("")
    w("Checks")
    failed = 0
    for c in result:
        tag = "PASS" if c["ok"] else ("WARN" if c["warn"] else "FAIL")
        failed += tag == "FAIL"
        w(f"  {tag}  {c['name']:<26} {c['count'] if not c['ok'] else '':>4}  {c['what']}")
        for o in c["offenders"][:15]:
            w(f"  {'':>36}{o[:170]}")
        if len(c["offenders"]) > 15:
            w(f"  {'':>36}... and {len(c['offenders']) - 15} more (report.json)")
    if soak.poll_errors:
        w(f"  (the soak's own polls failed: {dict(soak.poll_errors)}; squeue fails while slurmctld is away)")
    w("")
    w(f"RESULT: {'PASS' if not failed else 'FAIL'} ({len(result) - failed} of {len(result)} checks passed)")
    text = "\n".join(lines)
    with open(soak.report_dir + "/report.txt", "w") as f:
        f.write(text + "\n")
    data = {
        "run": soak.run_id, "seed": soak.args.seed, "quick": soak.args.quick, "took_s": took,
        "jobs": [{"idx": r.spec.idx, "name": r.name, "jobid": r.jobid, "spec": dataclasses.asdict(r.spec),
                  "mem": r.mem or r.spec.mem, "state": r.final_state(), "words": r.words(),
                  "reason": r.reason, "sacct": r.acct, "hits": r.hits,
                  "ok": verdicts.get(r.spec.idx, (None,))[0],
                  "why": verdicts.get(r.spec.idx, (None, ""))[1],
                  "submitted_s": r.submitted, "done_s": r.done,
                  "log": [e[3] for e in soak.logs.of(r.jobid)] if r.jobid else []}
                 for r in runs],
        "faults": list(soak.fault_results.values()),
        "drains": soak.drains, "checks": result,
        "poll_errors": dict(soak.poll_errors),
    }
    with open(soak.report_dir + "/report.json", "w") as f:
        json.dump(data, f, indent=1, default=str)
    print("\n" + text, flush=True)
    return failed == 0


# ---------------------------------------------------------------------------------------------
# Before the run: the cluster is up, idle, and clean (its leftovers would count as ours).
# ---------------------------------------------------------------------------------------------

def prechecks(cluster, kinds):
    problems = []
    rc, out, err = run(["scontrol", "ping"], timeout=30)
    if "UP" not in out:
        return [f"slurmctld does not answer ({(out + err).strip()[:120]})"]
    if len(cluster.nodes) < 2:
        problems.append(f"the cluster has {len(cluster.nodes)} node(s); the soak wants the local cluster's three")
    if run(VIRSH + ["version"], timeout=30)[0] != 0:
        problems.append("libvirtd does not answer (virsh -c qemu:///system version)")
    if run(["id", USER])[0] != 0 or not os.path.isdir(f"/home/{USER}"):
        problems.append(f"no test user {USER} with a home (contrib/cluster.sh start makes it)")
    need = {"tiny", "debian11"} | ({"panics"} if "guest_panic" in kinds else set())
    if not need <= cluster.images:
        problems.append(f"the catalog {cluster.opts['catalog']} lacks {', '.join(sorted(need - cluster.images))}")
    if "agent_kill" in kinds and not os.access(cluster.exec_client, os.X_OK):
        problems.append(f"no {cluster.exec_client} (the agent_kill fault runs it)")
    states = node_states() or {}
    bad = [f"{n} {s}: {why}" for n, (s, why) in sorted(states.items()) if not node_is_fine(s)]
    if bad:
        problems.append("nodes not usable before the soak (a drain is never resumed by the soak; "
                        "fix the cause, then `scontrol update NodeName=... State=RESUME`): " + "; ".join(bad))
    rc, out, _ = run(["squeue", "-h", "-o", "%i %u %T %j"], timeout=30)
    if out.strip():
        problems.append("the cluster is busy (the soak's leak checks need it to itself): " +
                        "; ".join(out.strip().splitlines()[:5]))
    leaks = leftovers(cluster)
    for name, what in leaks.items():
        if what:
            problems.append(f"leftovers before the soak ({name}), which it would count as its own: "
                            f"{' '.join(str(x) for x in what[:6])}")
    return problems


# ---------------------------------------------------------------------------------------------
# srun --pty on a pseudo-terminal (a separate process: pty.fork in a threaded program is not).
# ---------------------------------------------------------------------------------------------

def pty_session(out_path, sleep_s, argv):
    import pty
    import termios
    log = open(out_path, "ab", buffering=0)

    def note(msg):
        log.write(f"\npty-driver: {msg}\n".encode())

    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    seen = [b""]

    def read_until(pattern, timeout):
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(seen[0])
            if m:
                seen[0] = seen[0][m.end():]
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return False
            try:
                data = os.read(fd, 4096)
            except OSError:
                return False
            if not data:
                return False
            log.write(data)
            seen[0] = (seen[0] + data)[-8192:]

    def send(text):
        os.write(fd, text.encode())

    ok = False
    # A shell prompt: the VM booted (a cold debian11 is slow). BusyBox's ash ends its prompt
    # with a cursor position query (ESC [6n), which it does not wait for.
    if not read_until(rb"[$#] (?:\x1b\[6n)?$", 900):
        note("no shell prompt")
    else:
        send("echo soak-start $SLURM_JOB_ID $(hostname) $(tty)\r")
        if not read_until(rb"soak-start \d+ \S+ /dev/pts/\d+", 60):
            note("no soak-start line with a terminal")
        else:
            send(f"sleep {sleep_s}; echo soak-''end $SLURM_JOB_ID\r")
            if not read_until(rb"soak-end \d+", sleep_s + 120):
                note("no soak-end line")
            else:
                ok = True
        send("exit\r")
    code = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
        # Keep reading, so srun never blocks on its output; a closed terminal reads nothing.
        if not read_until(rb"(?!x)x", 0.5):
            time.sleep(0.2)
    if code is None:
        os.kill(pid, signal.SIGTERM)
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        note("srun did not end after exit: terminated")
    note(f"srun-exit={code}")
    note("ok" if ok and code == 0 else "FAIL")
    return 0 if ok and code == 0 else 1


# ---------------------------------------------------------------------------------------------
# Self-test of the pure pieces (no cluster): python3 bench/soak.py --self-test
# ---------------------------------------------------------------------------------------------

def self_test():
    kinds = list(FAULTS)
    a = make_plan(200, 7, False, kinds)
    b = make_plan(200, 7, False, kinds)
    assert [(w, x.describe()) for w, x in a[0]] == [(w, x.describe()) for w, x in b[0]], "plan not reproducible"
    assert len(a[1]) == 200 and [j.idx for j in a[1]] == list(range(1, 201)), "job numbering"
    assert collections.Counter(f.kind for f in a[2]) == collections.Counter(FULL_COUNTS), "full counts"
    c = make_plan(200, 8, False, kinds)
    assert [x.describe() for _, x in a[0]] != [x.describe() for _, x in c[0]], "seed ignored"
    items, jobs, faults = make_plan(30, 1, True, kinds)
    assert len(jobs) == 30 and sorted(f.kind for f in faults) == sorted(kinds), "quick: each fault once"
    order = [x.idx if w == "job" else -x.num for w, x in items]
    for w, x in items:
        if w == "fault":
            pos = order.index(-x.num)
            assert order[pos - 1] == x.after_job or x.after_job in [v.idx for f in faults for v in f.victims], "fault after its job"
            if x.kind in TARGETED:
                bait = jobs[x.after_job - 1]
                assert bait.role == "bait" and bait.kind == "batch" and bait.sleep >= 25, "bait"
    for images in ({j.image for j in jobs},):
        assert {"tiny", "debian11", "panics"} <= images, "the mix and victims' images"
    assert {"batch", "step", "pty"} <= {j.kind for j in make_plan(200, 3, False, kinds)[1]}, "kinds"
    try:
        make_plan(20, 1, True, kinds)
        raise AssertionError("too few jobs accepted")
    except ValueError:
        pass
    none = make_plan(10, 1, True, [])
    assert len(none[1]) == 10 and not none[2], "no faults"
    # The plugin's log lines (docs/admin-guide.md, spank/job_script.cpp).
    line = ("[2026-12-07T05:29:48.694] slurm-vm: job 1 node node1 image tiny: VM svm-1-node1 ready "
            "as node1-vm1 (qemu, 1 vCPU, 256 MiB): warm (slot 0), created in 2.47 s, agent ready "
            "after 0.19 s, set up in 0.67 s; vCPUs on CPUs 0")
    m = LOG_RE.search(line)
    assert m and m.group(1) == "1" and m.group(2) == "node1" and classify_log(m.group(4)) == "ready_warm"
    assert classify_log("no warm start: cold: the snapshot could not be made: x") == "no_warm"
    assert classify_log("VM stopped: domain svm-1-node1 powered off after 211 ms (agent)") == "stopped"
    assert first_words("soak-start 5 node1-vm5\nslurm-vm: image 'tiny' on node1 (job 5): the VM "
                       "stopped or its agent went away while the command ran\n") .startswith("slurm-vm: image")
    assert normalise("slurm-vm: image 'tiny' on node3 (job 12): no room: 812 MiB") == \
        normalise("slurm-vm: image 'tiny' on node1 (job 40): no room: 3 MiB")
    # Judging: a victim of fs_full that failed with "no room" is fine; an unexplained failure not.
    spec = JobSpec(idx=1, kind="batch", image="tiny", role="victim", fault=1)
    f = FaultSpec(num=1, kind="fs_full", after_job=0, delay=0, params={}, victims=[spec])
    r = JobRun(spec=spec, name="x", jobid="12", submitted=1.0, done=5.0, state="FAILED", hits=[1])
    r.acct = {"State": "FAILED"}
    res = {1: {"t0": 0.5, "t1": 6.0, "kind": "fs_full"}}
    r.out = "/nonexistent"
    assert not judge_job(r, {1: f}, res)[0]
    r.reason = "slurm-vm: image 'tiny' on node3 (job 12): no room for a VM: ..."
    assert judge_job(r, {1: f}, res)[0]
    free = JobRun(spec=JobSpec(idx=2, kind="batch", image="tiny"), name="y", jobid="13",
                  submitted=100.0, done=110.0, state="FAILED", out="/nonexistent")
    free.acct = {"State": "FAILED"}
    assert not judge_job(free, {1: f}, res)[0]
    lv = JobRun(spec=JobSpec(idx=3, kind="batch", image="tiny"), name="z", jobid="14",
                submitted=1.0, done=8.0, state="FAILED", out="/nonexistent",
                reason="slurm-vm: cannot connect to libvirt at qemu:///system")
    lv.acct = {"State": "FAILED"}
    g = FaultSpec(num=2, kind="libvirtd_restart", after_job=0, delay=0, params={}, victims=[])
    assert judge_job(lv, {2: g}, {2: {"t0": 2.0, "t1": 3.0}})[0]
    print("soak self-test: ok")


# ---------------------------------------------------------------------------------------------

def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--pty-session":
        out, sleep_s = sys.argv[2], int(sys.argv[3])
        argv = sys.argv[sys.argv.index("--") + 1:]
        sys.exit(pty_session(out, sleep_s, argv))
    ap = argparse.ArgumentParser(
        prog="bench/soak.sh", description=__doc__.splitlines()[0],
        epilog="Faults: " + "; ".join(f"{k}: {v}" for k, v in FAULTS.items()))
    ap.add_argument("--jobs", type=int, help="VM jobs in all, the faults' own included (200; --quick 30)")
    ap.add_argument("--seed", type=int, default=1, help="the plan's seed (1)")
    ap.add_argument("--quick", action="store_true", help="a short run: 30 jobs, each fault once, shorter sleeps")
    ap.add_argument("--concurrency", type=int, help="VMs at once at most (4; --quick 3)")
    ap.add_argument("--faults", default="all", help="comma-separated fault kinds, 'all' or 'none'")
    ap.add_argument("--dry-run", action="store_true", help="print the plan for the seed and stop")
    ap.add_argument("--cleanup-only", action="store_true", help="undo what a killed run left")
    ap.add_argument("--self-test", action="store_true", help="check the pure pieces, no cluster")
    args = ap.parse_args()
    if args.self_test:
        self_test()
        return 0
    if args.cleanup_only:
        cleanup(Journal())
        return 0
    kinds = list(FAULTS) if args.faults == "all" else (
        [] if args.faults == "none" else [k for k in args.faults.split(",") if k])
    unknown = [k for k in kinds if k not in FAULTS]
    if unknown:
        ap.error(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    args.jobs = args.jobs or (30 if args.quick else 200)
    args.concurrency = args.concurrency or (3 if args.quick else 4)
    try:
        items, jobs, faults = make_plan(args.jobs, args.seed, args.quick, kinds)
    except ValueError as e:
        ap.error(str(e))
    if args.dry_run:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # bench/soak.sh --dry-run | head
        print_plan(items, jobs, faults, args.seed, args.quick)
        return 0
    if os.geteuid() != 0:
        sys.exit("soak: run as root (it kills QEMUs, restarts daemons, mounts over the jobs folder)")
    journal = Journal()
    if journal.load():
        print("soak: a previous run left changes behind; undoing them first", flush=True)
        cleanup(journal)
    cluster = Cluster()
    problems = prechecks(cluster, kinds)
    if problems:
        for p in problems:
            print(f"soak: {p}", file=sys.stderr)
        print("soak: not started", file=sys.stderr)
        return 2
    soak = Soak(args, cluster, items, jobs, faults)
    def interrupted(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, interrupted)
    ok = False
    try:
        soak.setup()
        print_plan(items, jobs, faults, args.seed, args.quick,
                   file=open(soak.report_dir + "/plan.txt", "w"))
        soak.say(f"soak {soak.run_id}: {len(jobs)} jobs, {len(faults)} faults, seed {args.seed}, "
                 f"at most {args.concurrency} VMs at once; plan in {soak.report_dir}/plan.txt")
        threading.Thread(target=soak.poller, daemon=True).start()
        soak.main_loop()
        if not soak.wait_all_done():
            soak.say("some jobs did not end in time; they are judged as they are")
        try:
            verdicts, result = finish(soak)
            ok = report(soak, verdicts, result, soak.now())
        except Exception:
            # A bug of the report must not lose the run: what was seen goes to raw.json.
            import traceback
            traceback.print_exc()
            with open(soak.report_dir + "/raw.json", "w") as f:
                json.dump({"jobs": [dataclasses.asdict(r.spec) | {
                    "jobid": r.jobid, "state": r.state, "reason": r.reason, "acct": r.acct,
                    "hits": r.hits, "words": r.words()} for r in soak.runs.values()],
                    "faults": soak.fault_results, "drains": soak.drains}, f, indent=1, default=str)
            soak.say(f"the report failed (above); what the run saw is in {soak.report_dir}/raw.json")
            ok = False
    except KeyboardInterrupt:
        soak.say("interrupted: undoing the soak's changes; no verdict")
        with open(soak.report_dir + "/faults.log", "a") as f:
            f.write("interrupted\n")
        ok = None
    finally:
        soak.stop.set()
        cleanup(journal, soak.say)
    if ok is None:
        return 130
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
