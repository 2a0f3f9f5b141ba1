"""ssh/scp/rsync command lines as data: quoting, host-key options, target parsing, failure lines."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from edgekit.core.errors import ConfigError
from edgekit.jetson.ssh import (
    Completed,
    SshConfig,
    SshSession,
    SshTarget,
    classify_failure,
    host_key_option,
    remote_command,
    rsync_argv,
    scp_argv,
    script_command,
    ssh_argv,
)

EVIL = ["a b;touch x", "$(id)", "`id`", "x' ; rm -rf ~ '", "-rf", "a\nb", "*", "~/q"]


@pytest.mark.parametrize("spec, user, host, port", [
    ("nvidia@192.168.1.20", "nvidia", "192.168.1.20", None),
    ("root@127.0.0.1:2222", "root", "127.0.0.1", 2222),
    ("jetson.local", None, "jetson.local", None),
    ("me@[::1]:22", "me", "::1", 22),
    ("::1", None, "::1", None),
])
def test_target_parses(spec, user, host, port):
    t = SshTarget.parse(spec)
    assert (t.user, t.host, t.port) == (user, host, port)


@pytest.mark.parametrize("spec", ["-oProxyCommand=x", "root@-x", "a b", "root@", "h:0", "h:99999", "h:x",
                                  "u;id@h", "$(id)@h", "[::1]x", ""])
def test_target_refuses_what_ssh_could_read_as_options(spec):
    with pytest.raises(ConfigError, match="user@host"):
        SshTarget.parse(spec)


def test_target_prints_as_given():
    assert [str(SshTarget.parse(s)) for s in ("a@a:22", "me@[::1]:22", "::1", "h")] == ["a@a:22", "me@[::1]:22", "::1", "h"]


def test_known_hosts_name_follows_ssh():
    assert SshTarget.parse("a@h").known_hosts_name == "h"
    assert SshTarget.parse("a@h:22").known_hosts_name == "h"
    assert SshTarget.parse("a@h:2222").known_hosts_name == "[h]:2222"


def _cfg(**kw) -> SshConfig:
    kw.setdefault("target", SshTarget.parse("nvidia@jet:2222"))
    return SshConfig(**kw)


def test_ssh_argv_is_batch_strict_and_quoted():
    argv = ssh_argv(_cfg(), remote_command(["edgekit", "bench", *EVIL]))
    assert argv[:2] == ["ssh", "-T"]
    assert argv[argv.index("BatchMode=yes") - 1] == "-o"
    assert "StrictHostKeyChecking=yes" in argv and "StrictHostKeyChecking=no" not in argv
    assert "ConnectTimeout=10" in argv
    assert argv[-4:-1] == ["2222", "--", "nvidia@jet"]
    # the remote shell splits the command back into exactly the words given
    assert shlex.split(argv[-1]) == ["edgekit", "bench", *EVIL]


@pytest.mark.parametrize("word", EVIL)
def test_a_quoted_word_reaches_a_real_shell_as_one_literal_argument(word, tmp_path):
    cmd = remote_command(["printf", "%s", word])
    p = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, cwd=tmp_path)
    assert p.stdout == word and not (tmp_path / "x").exists()


def test_script_command_passes_args_positionally():
    cmd = script_command('printf "%s|" "$@"', ["a b;touch x", "$(id)"])
    p = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True)
    assert p.stdout == "a b;touch x|$(id)|"


def test_user_options_config_and_identity_come_before_edgekit_defaults():
    cfg = _cfg(options=("UserKnownHostsFile=/k h",), config_file="/c", identity="/id")
    argv = ssh_argv(cfg, "true")
    assert argv.index("-F") < argv.index("StrictHostKeyChecking=yes")
    assert argv[argv.index("-F") + 1] == "/c" and argv[argv.index("-i") + 1] == "/id"
    assert "UserKnownHostsFile=/k h" in argv  # one argv word: no shell in between


def test_host_key_checking_is_never_no():
    assert host_key_option(None) == "StrictHostKeyChecking=yes"
    assert host_key_option("ask") == "StrictHostKeyChecking=yes"
    assert host_key_option("no") == "StrictHostKeyChecking=yes"  # a config saying no is overridden
    assert host_key_option("accept-new") is None  # the user's own choice is kept
    for opt in ("StrictHostKeyChecking=no", "stricthostkeychecking=off"):
        with pytest.raises(ConfigError, match="never"):
            SshConfig.build("h", [opt])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        SshConfig.build("h", ["-oProxyCommand=x"])


def test_user_accept_new_is_honoured_and_not_overridden():
    cfg = _cfg(options=("StrictHostKeyChecking=accept-new",))
    argv = ssh_argv(cfg, "true")
    assert [a for a in argv if a.lower().startswith("stricthostkeychecking")] == ["StrictHostKeyChecking=accept-new"]


def test_env_options_and_config(monkeypatch, tmp_path):
    cfg_file = tmp_path / "cfg"
    cfg_file.write_text("")
    cfg = SshConfig.build("h", ["IdentitiesOnly=yes"],
                          environ={"EDGEKIT_SSH_OPTS": "UserKnownHostsFile=/kh Port=22", "EDGEKIT_SSH_CONFIG": str(cfg_file)})
    assert cfg.options == ("UserKnownHostsFile=/kh", "Port=22", "IdentitiesOnly=yes")
    assert cfg.config_file == str(cfg_file)
    with pytest.raises(ConfigError, match="does not exist"):
        SshConfig.build("h", environ={"EDGEKIT_SSH_CONFIG": str(tmp_path / "nope")})


def test_scp_and_rsync_argv():
    cfg = _cfg()
    scp = scp_argv(cfg, "/local/b", "/home/n/edgekit/bundles/.edgekit-push-ab")
    assert scp[:4] == ["scp", "-p", "-r", "-q"] and "-P" in scp and scp[scp.index("-P") + 1] == "2222"
    assert scp[-3:] == ["--", "/local/b", "nvidia@jet:/home/n/edgekit/bundles/.edgekit-push-ab"]
    assert "StrictHostKeyChecking=yes" in scp
    rs = rsync_argv(cfg, "/local/b", "/r/x")
    assert rs[:2] == ["rsync", "-a"] and rs[-2:] == ["/local/b/", "nvidia@jet:/r/x/"]
    e = shlex.split(rs[rs.index("-e") + 1])
    assert e[:2] == ["ssh", "-T"] and "StrictHostKeyChecking=yes" in e and e[-2:] == ["-p", "2222"]
    assert rsync_argv(cfg, "/l", "/r", pull=True)[-2:] == ["nvidia@jet:/r/", "/l/"]


@pytest.mark.parametrize("path", ["/r/a b", "/r/$(id)", "/r/x;y", "~/r"])
def test_scp_and_rsync_refuse_paths_they_might_reinterpret(path):
    with pytest.raises(ConfigError, match="remote path"):
        scp_argv(_cfg(), "/l", path)
    with pytest.raises(ConfigError, match="remote path"):
        rsync_argv(_cfg(), "/l", path)


@pytest.mark.parametrize("stderr, expect", [
    ("ssh: connect to host 127.0.0.1 port 22998: Connection refused", "unreachable"),
    ("ssh: Could not resolve hostname x: Name or service not known", "unreachable"),
    ("Connection timed out during banner exchange", "unreachable"),
    ("No ED25519 host key is known for [127.0.0.1]:22999 and you have requested strict checking.\n"
     "Host key verification failed.", "ssh-keyscan -p 2222 jet >> ~/.ssh/known_hosts"),
    ("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed.",
     "ssh-keygen -f ~/.ssh/known_hosts -R '[jet]:2222'"),
    ("root@127.0.0.1: Permission denied (publickey).", "ssh-copy-id -p 2222 nvidia@jet"),
    ("kex_exchange_identification: something odd", "ssh to nvidia@jet:2222 failed: kex_exchange"),
])
def test_ssh_failures_are_one_line_with_the_fix(stderr, expect):
    msg = classify_failure(_cfg(), stderr).format()
    assert expect in msg and "\n" not in msg


def test_session_resolves_the_users_host_key_policy_once():
    seen = []

    def runner(argv, **kw):
        seen.append(argv)
        if argv[1] == "-G":
            return Completed(0, "user nvidia\nstricthostkeychecking accept-new\nuserknownhostsfile /kh /kh2\n", "")
        return Completed(255, "", "Host key verification failed.")

    s = SshSession(_cfg(), runner)
    with pytest.raises(Exception, match="not in /kh"):
        s.run("true")
    s.argv("true")
    assert sum(a[1] == "-G" for a in seen) == 1
    assert "StrictHostKeyChecking=yes" not in seen[1]


def test_streamed_output_arrives_as_it_is_written_not_at_the_end():
    import time

    from edgekit.jetson.ssh import run_argv

    class Sink:
        def __init__(self):
            self.writes = []

        def write(self, text):
            self.writes.append((time.monotonic(), text))

        def flush(self):
            pass

    out, err = Sink(), Sink()
    t0 = time.monotonic()
    p = run_argv(["sh", "-c", "printf '\\r1/2' >&2; sleep 1; printf '\\r2/2' >&2; echo done"], stream=True, out=out, err=err)
    end = time.monotonic()
    assert p.returncode == 0 and p.stdout == "done\n" and p.stderr == "\r1/2\r2/2"
    first = err.writes[0]
    assert first[1] == "\r1/2" and first[0] - t0 < end - t0 - 0.5  # a progress redraw with no newline, live
