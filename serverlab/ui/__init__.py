"""The lab's additions to Locust's web UI, built on Locust's documented extension points.

Registered from the locustfile's ``events.init`` listener (:class:`LabUI`); the web parts
only where ``environment.web_ui`` exists (the master, or a local runner with a UI).
One module per job:

* :mod:`serverlab.ui.limits` — the bounds of every request that starts load, and their checks;
* :mod:`serverlab.ui.guard` — a same-origin check on state-changing requests, and those
  bounds applied to Locust's own ``POST /swarm``;
* :mod:`serverlab.ui.web` — a Flask Blueprint with its own ``templates/`` and ``static/``
  (the Compare and Reports pages), Locust's ``extended_tabs`` / ``extended_tables`` /
  ``extended_csv_files`` template arguments and an ``extended_stats`` key on
  ``/stats/requests``;
* :mod:`serverlab.ui.collect` — master/worker messages gathering every process's HDR recorder;
* :mod:`serverlab.workerhosts` — which workers are connected, from which hosts, and refusing a
  worker of another lab version (shown in the **Worker hosts** tab);
* :mod:`serverlab.ui.compare` — the Compare runner: serverlab's own runner through the lab
  backend (:mod:`serverlab.backends.lab`), each comparison a run folder under ``reports/``;
  and the live server CPU and bottleneck of an ordinary test.

**The Host field is the Server field.** Locust's start form shows Host first among its
text fields (custom arguments sit in the collapsed *Custom parameters*), keeps it in the
*New* dialog and on reload (it is ``environment.host``), and its header shows it at every
width (in the drawer on a phone, 180 px wide). So ``environment.host`` holds the chosen
server's *name* (``--server``'s at start; the locustfile's users turn it into the URL),
short enough for the phone header; Host takes a server's name or URL, anything else is
refused unless opted in with ``--allow-host`` / ``SERVERLAB_ALLOW_HOSTS``. The workload is
the ``--workload`` custom argument (``include_in_web_ui``), not a class picker: a first
Start sends one workload, never a mix.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from serverlab.terms import DEFAULT_WORKLOAD
from serverlab.ui.limits import SwarmForm, Targets, UIRefused, check_swarm_form


class LabUI:
    """Everything the lab adds to one Locust process (master, worker or local).

    :param environment: Locust's environment.
    :param workload_classes: workload name (``hello``, ``cpu``, ...) -> its User class.
    :param recorder: the process's HDR recorder (``locustfile.Recorder``).
    :param variants: server variant name -> its ``labapp.variants.Variant`` (read from servers/).
    :param target_url: server name -> URL (e.g. ``http://gunicorn-sync:8000``).
    :param allow_hosts: further URLs the Host field may name (the user's opt-in, given at start).
    :param lab_version: this process's :func:`serverlab.workerhosts.lab_version` (default: computed here).
    """

    def __init__(self, environment: Any, workload_classes: dict[str, type], recorder: Any,
                 variants: dict[str, Any], target_url: Callable[[str], str], allow_hosts: Iterable[str] = (),
                 lab_version: str = "") -> None:
        from serverlab.ui.collect import Collector
        from serverlab.ui.compare import CompareRunner, LiveCpu
        from serverlab.workerhosts import WorkerHosts
        from serverlab.workerhosts import lab_version as version_of_this_lab

        self.environment = environment
        self.workload_classes = workload_classes
        self.variants = variants
        self.target_url = target_url
        self.targets = Targets({name: target_url(name) for name in variants},
                               extra=tuple(h.strip().rstrip("/") for h in allow_hosts if h.strip()))
        from serverlab.ui.web import REPORTS_DIR

        self.collector = Collector(environment, recorder)
        #: Locust's workers as they introduced themselves (hosts, CPUs, lab version).
        self.hosts = WorkerHosts(environment, lab_version or version_of_this_lab())
        self.compare = CompareRunner(environment, self.collector, workload_classes, variants, target_url, REPORTS_DIR)
        self.live = LiveCpu(environment, self.collector, self.server, target_url, self.compare.running)
        #: The Host value the next (or current) test loads (a server name, or an opted-in URL):
        #: what the Host field and the header show.
        self.chosen = ""

    def install(self) -> None:
        """Register the master/worker messages, and (where a web UI exists) the guard and the pages."""
        self.collector.install()
        self.hosts.install(self.collector)
        web_ui = self.environment.web_ui
        if web_ui is None:
            return
        from serverlab.ui.guard import Guard
        from serverlab.ui.web import LabWeb

        env = self.environment
        options = env.parsed_options
        if not env.host:
            env.host = getattr(options, "server", None) or next(iter(self.variants))
        self.chosen = env.host
        env.user_classes = [self.workload_classes[self.workload()]]
        Guard(self, lambda: self.chosen).install(web_ui.app)
        LabWeb(self).install(web_ui)
        self.live.start()

    def workload(self) -> str:
        """The workload the next (or current) test loads (``--workload``)."""
        value = getattr(self.environment.parsed_options, "workload", None)
        return value if value in self.workload_classes else DEFAULT_WORKLOAD

    def server(self) -> str:
        """The server name the next (or current) test loads (or the opted-in URL)."""
        return self.targets.name_of(self.chosen)

    def url(self) -> str:
        """The URL the next (or current) test loads."""
        return self.targets.url_of(self.chosen)

    def check_swarm(self, form: dict[str, list[str]]) -> SwarmForm:
        """Check a ``POST /swarm`` form and point the test at its server and workload.

        :raises UIRefused: (409) while a comparison runs or the last test is stopping; else
            whatever :func:`~serverlab.ui.limits.check_swarm_form` refuses.
        """
        if self.compare.running():
            raise UIRefused("a comparison is running: stop it (Compare servers page) before starting a test",
                            status=409)
        state = self.environment.runner.state
        if state in ("stopping", "cleanup"):
            raise UIRefused(f"the last test is still {state}: start again in a moment", status=409)
        checked = check_swarm_form(form, self.targets, self.chosen, self.workload(),
                                   running=state in ("spawning", "running"))
        self.chosen = checked.fields["host"][0]
        self.environment.user_classes = [self.workload_classes[checked.workload]]
        return checked

    def before_stop(self) -> None:
        """Locust's Stop also ends a running comparison (its measured rows are kept)."""
        if self.compare.running():
            self.compare.stop()
