"""The MLflow server app ``pipeline ui`` runs: MLflow's own, plus one page that keeps its UI
in the model-training view on every page.

How the installed UI (MLflow 3.17) decides, read from its JavaScript bundle: the view is the
URL's ``workflowType`` parameter when there is one, else the browser's localStorage key
``mlflow.workflowType_v1``, else GenAI (a constant; the experiment tag
``mlflow.experimentKind`` no longer decides it). The experiment pages keep the parameter
from link to link; a run page's link drops it, so a click on a trial fell back to GenAI
(Traces, Sessions, Judges…, an "Evaluations" breadcrumb). The "MLflow Assistant" panel
opens once by itself in a new browser on a localhost address and then stays open on every
page (localStorage ``mlflow.assistant.panelOpen_v1`` and
``mlflow.assistant.fab.autoOpenedOnFirstLoad_v1``). Nothing on the server decides either.

So ``pipeline ui`` opens :data:`OPEN_ROUTE` first: served by the same server (the same
origin as the UI, whose localStorage it writes), it sets the view to model training and the
panel to closed — what the UI's own "Model training" switch and close button store — and
replaces itself with the experiment's runs page. A user can switch back in the sidebar.

The runs table's columns: the link ``pipeline ui`` prints names a shared view (the
experiment tag :data:`VIEW_TAG`), which applies only while the URL names it; an experiment
reached from the experiments list shows the view the browser saved for it, MLflow's default
columns (Dataset, Source, Models) on a first visit. The UI saves that view in localStorage
under :data:`SAVED_VIEW_AROUND` (``LocalStorageUtils.getStoreForComponent("ExperimentPage",
JSON.stringify(sortedIds))`` in the bundle), as ``{...searchFacets, ...uiState}``: the same
fields a shared view holds. So the page also copies each experiment's :data:`VIEW_TAG` there,
where the browser has none yet (a view the user changed is kept).
The app is an ``mlflow.app`` entry point (``mlflow server --app-name gan-pipeline``), made as
MLflow's basic-auth app is made: MLflow's Flask app with the page added, wrapped in its
FastAPI app under uvicorn. With ``--auth`` the basic-auth app runs instead, without the page.
"""

from __future__ import annotations

import json
from typing import Any

#: the page that sets the UI's localStorage, then opens ``?to=<UI fragment>``
OPEN_ROUTE = "/gan-pipeline/open"
#: what the UI stores for "Model training" and for a closed assistant panel (JSON values)
UI_SETTINGS = {
    "mlflow.workflowType_v1": "machine_learning",
    "mlflow.assistant.panelOpen_v1": False,
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True,
}
#: the app's name for ``mlflow server --app-name``
APP_NAME = "gan-pipeline"
#: the runs-table view ``pipeline ui`` writes: an experiment tag the UI reads as the shared
#: view ``mlflow.sharedViewState.<key>`` (what its "Share" button writes) named in the URL
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_KEY = "gan-pipeline"
VIEW_TAG = SHARED_VIEW_PREFIX + VIEW_KEY
#: how long the page waits for the experiments before it opens the UI anyway (ms)
FETCH_WAIT_MS = 3000
#: the UI's (MLflow 3.17) localStorage key of the runs-table view it shows for experiment
#: ``id`` alone: these around ``JSON.stringify([id])``
SAVED_VIEW_AROUND = ("MLflowLocalStorage-1.1-ExperimentPage-", "-ReactComponentState")


def open_page(target: str) -> str:
    """The HTML of :data:`OPEN_ROUTE` for ``target``, a fragment of the UI (``#/…``); any
    other target (another site, a script) opens the UI's front page instead."""
    if not target.startswith("#/"):
        target = "#/"
    writes = "".join(
        f"localStorage.setItem({json.dumps(k)}, {json.dumps(json.dumps(v))});"
        for k, v in UI_SETTINGS.items()
    )
    go = json.dumps("/" + target).replace("<", "\\u003c")
    before, after = (json.dumps(part) for part in SAVED_VIEW_AROUND)
    views = (  # each experiment's view where the browser has none yet, then the UI
        f"const go=()=>location.replace({go});const timer=setTimeout(go,{FETCH_WAIT_MS});"
        "fetch('/ajax-api/2.0/mlflow/experiments/search?max_results=1000')"
        ".then(r=>r.json()).then(d=>{for(const e of d.experiments||[]){"
        f"const t=(e.tags||[]).find(t=>t.key==={json.dumps(VIEW_TAG)});if(!t)continue;"
        f"const k={before}+JSON.stringify([e.experiment_id])+{after};"
        "if(localStorage.getItem(k)===null)localStorage.setItem(k,t.value);}})"
        ".catch(()=>{}).finally(()=>{clearTimeout(timer);go();});"
    )
    return (
        "<!doctype html><meta charset=utf-8><title>MLflow</title>"
        f"<script>try{{{writes}}}catch(e){{}}{views}</script>"
    )


def add_open_page(flask_app: Any) -> None:
    """Add :data:`OPEN_ROUTE` to MLflow's Flask app."""
    from flask import request

    def view() -> tuple[str, int, dict[str, str]]:
        page = open_page(request.args.get("to", ""))
        return page, 200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}

    flask_app.add_url_rule(OPEN_ROUTE, "gan_pipeline_open", view, methods=["GET"])


def create_app() -> Any:
    """The ``mlflow.app`` factory: MLflow's server app with :data:`OPEN_ROUTE`."""
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app

    add_open_page(app)
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(app)
    return app
