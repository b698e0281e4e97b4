"""The review app: server-rendered pages for investigators (Jinja2, plain forms, one small inline
script for keyboard shortcuts, no build step) and a JSON API beside them.

Pages: `/login`, `/queue` (open alerts by score or by score x amount, filters, claim the next),
`/alerts/{id}` (the transaction, its score against the threshold, the contributions, the entity's
history and earlier verdicts, decide with buttons or the keys f / l / u), `/dashboard`.
Pages need a session cookie (HttpOnly, SameSite=Strict) and every form a CSRF token.

API (every route needs `Authorization: Bearer TOKEN`, the token `aedetect review users add`
prints): `GET /api/alerts`, `POST /api/alerts/next`, `GET /api/alerts/{id}`,
`POST /api/alerts/{id}/claim`, `POST /api/alerts/{id}/verdict`, `POST /api/alerts/{id}/reopen`,
`POST /api/alerts/{id}/assign`, `GET /api/alerts/{id}/history`, `GET /api/stats`.
"""


import hmac
import secrets
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from aedetect.review.store import ORDERS, SESSION_HOURS, AlertStore, Reviewer, ReviewError
from aedetect.review.tables import STATUSES, VERDICTS

TEMPLATES = Path(__file__).with_name("templates")
SESSION_COOKIE = "aedetect_session"
LOGIN_COOKIE = "aedetect_login"  # the login form's CSRF token (double submit: cookie and field)
PAGE_SIZE = 50
COUNT_CAP = 10_000  # the queue page counts up to this many, then says "10,000+"


class VerdictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["fraud", "legit", "unsure"]
    note: str = Field("", max_length=4000)


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee: str = Field(min_length=1, max_length=120)


class AlertSummary(BaseModel):
    id: int
    transaction_id: str
    score: float
    threshold: float
    amount: float | None
    status: str
    assignee: str | None
    verdict: str | None
    model_id: str
    model_version: str
    top_reason: str | None
    entity: str | None
    created_at: str | None
    claimed_at: str | None
    decided_at: str | None


class AlertDetail(AlertSummary):
    transaction: dict
    reasons: list
    history: dict | None


class AlertList(BaseModel):
    alerts: list[AlertSummary]
    total: int


class AuditItem(BaseModel):
    at: str | None
    who: str
    what: str
    before: dict | None
    after: dict | None


class AuditList(BaseModel):
    alert_id: int
    entries: list[AuditItem]


class Problem(BaseModel):
    detail: str


PROBLEMS = {400: "a body that cannot be read as JSON", 401: "no valid Bearer token",
            403: "not allowed for this user's role or claim", 404: "no such alert or user",
            409: "the alert's state does not allow it (claimed by another, decided, already open)"}


def _problems(*codes: int) -> dict:
    return {c: {"model": Problem, "description": PROBLEMS[c]} for c in codes}


AlertId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="the alert's id")]
Status = Literal["open", "claimed", "decided", "any"]
Order = Literal["score", "value"]


LOGIN_ATTEMPTS, LOGIN_WINDOW_S = 5, 300  # failed logins per name within the window, then 429


class _Failures:
    """Failed logins per user name in the last `LOGIN_WINDOW_S` seconds (this process only)."""

    def __init__(self):
        self.times: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def blocked(self, name: str) -> bool:
        now = time.monotonic()
        with self.lock:
            recent = [t for t in self.times.get(name, []) if now - t < LOGIN_WINDOW_S]
            self.times[name] = recent
            return len(recent) >= LOGIN_ATTEMPTS

    def add(self, name: str) -> None:
        with self.lock:
            self.times.setdefault(name, []).append(time.monotonic())

    def clear(self, name: str) -> None:
        with self.lock:
            self.times.pop(name, None)


class LoginRequired(Exception):
    """A page asked for without a session: the answer is the login page."""


def _day(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ReviewError(f"{name} must be a date such as 2026-12-05; got {value!r}", 400) from None


def create_review_app(store: AlertStore | str, *, secure_cookies: bool = False) -> FastAPI:
    """The review app over `store` (an AlertStore or a database URL at the head revision).
    `secure_cookies` marks the session cookie Secure (serve it behind HTTPS)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    if isinstance(store, str):
        store = AlertStore(store, migrate=False)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.filters["fmt"] = _fmt
    env.filters["count"] = lambda n: f"{COUNT_CAP:,}+" if n > COUNT_CAP else f"{n:,}"
    app = FastAPI(title="aedetect review", version="1", docs_url=None, redoc_url=None)
    app.state.store = store
    bearer = HTTPBearer(auto_error=False)
    failures = _Failures()

    # -- who is asking --------------------------------------------------------------------------

    def api_user(cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Reviewer:
        user = store.user_by_token(cred.credentials) if cred is not None else None
        if user is None:
            raise HTTPException(401, "a valid 'Authorization: Bearer TOKEN' header is required",
                                headers={"WWW-Authenticate": "Bearer"})
        return user

    def page_session(request: Request) -> tuple[Reviewer, str]:
        cookie = request.cookies.get(SESSION_COOKIE)
        found = store.session_user(cookie) if cookie else None
        if found is None:
            raise LoginRequired()
        return found

    async def form_session(request: Request) -> tuple[Reviewer, str]:
        """A form post: a live session and the session's CSRF token in the form's `csrf` field."""
        cookie = request.cookies.get(SESSION_COOKIE)
        found = store.session_user(cookie) if cookie else None
        if found is None:
            raise HTTPException(401, "not logged in")
        form = await request.form()
        if not hmac.compare_digest(str(form.get("csrf", "")), found[1]):
            raise HTTPException(403, "the form's CSRF token is missing or wrong; reload the page")
        return found

    PageUser = Annotated[tuple[Reviewer, str], Depends(page_session)]
    FormUser = Annotated[tuple[Reviewer, str], Depends(form_session)]
    ApiUser = Annotated[Reviewer, Depends(api_user)]

    def render(name: str, status: int = 200, **context) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        html = env.get_template(name).render(nonce=nonce, **context)
        return HTMLResponse(html, status, headers={
            "Content-Security-Policy": f"default-src 'self'; script-src 'nonce-{nonce}'; "
                                       "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                       "form-action 'self'; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store"})

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired):
        return RedirectResponse("/login?" + urlencode({"next": request.url.path}), 303)

    @app.exception_handler(ReviewError)
    async def refused(request: Request, exc: ReviewError):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, exc.status)
        return render("error.html", exc.status, user=None, message=str(exc))

    # -- login ----------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(next: str = "/queue", failed: bool = False):  # noqa: A002 - the page's parameter
        token = secrets.token_urlsafe(32)
        response = render("login.html", 401 if failed else 200, user=None, csrf=token, next=_local(next),
                          failed=failed)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=secure_cookies,
                            max_age=3600)
        return response

    @app.post("/login", include_in_schema=False)
    def login(request: Request, name: Annotated[str, Form()], password: Annotated[str, Form()],
              csrf: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/queue"):  # noqa: A002
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(csrf, expected):
            raise HTTPException(403, "the login form's CSRF token is missing or wrong; reload the page")
        if failures.blocked(name):
            raise HTTPException(429, f"too many failed logins for this name; try again in "
                                f"{LOGIN_WINDOW_S // 60} minutes", headers={"Retry-After": str(LOGIN_WINDOW_S)})
        session = store.login(name, password)
        if session is None:
            failures.add(name)
            return login_page(next=next, failed=True)
        failures.clear(name)
        response = RedirectResponse(_local(next), 303)
        response.set_cookie(SESSION_COOKIE, session[0], httponly=True, samesite="strict",
                            secure=secure_cookies, max_age=SESSION_HOURS * 3600)
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, who: FormUser):
        store.logout(request.cookies[SESSION_COOKIE])
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # -- pages ----------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def home():
        return RedirectResponse("/queue", 303)

    @app.get("/queue", response_class=HTMLResponse, include_in_schema=False)
    def queue_page(who: PageUser, status: str = "open", model: str = "", reason: str = "",
                   since: str = "", until: str = "", order: str = "score", page: int = 1,
                   done: int | None = None, empty: bool = False):
        user, csrf = who
        filters = dict(status=status or None, model=model or None, reason=reason or None,
                       since=_day(since, "since"), until=_next_day(_day(until, "until")))
        page = max(1, page)
        alerts, total = store.list_alerts(**filters, order=order, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE,
                                          count_cap=COUNT_CAP)
        query = {k: v for k, v in dict(status=status, model=model, reason=reason, since=since, until=until,
                                       order=order).items() if v}
        return render("queue.html", user=user, csrf=csrf, alerts=alerts, total=total, cap=COUNT_CAP,
                      counts=store.counts(COUNT_CAP),
                      facets=store.facets(), statuses=STATUSES, orders=ORDERS, f=dict(query, status=status),
                      page=page, pages=None if total > COUNT_CAP else max(1, -(-total // PAGE_SIZE)),
                      more=len(alerts) == PAGE_SIZE and page * PAGE_SIZE < total, query=urlencode(query),
                      done=store.get(done) if done else None, empty=empty)

    @app.post("/queue/next", include_in_schema=False)
    async def claim_next_page(request: Request, who: FormUser):
        form = await request.form()
        order = str(form.get("order") or "score")
        got = store.claim_next(who[0], order=order, model=str(form.get("model") or "") or None,
                               reason=str(form.get("reason") or "") or None)
        return RedirectResponse(f"/alerts/{got['id']}" if got else "/queue?empty=1", 303)

    @app.get("/alerts/{alert_id}", response_class=HTMLResponse, include_in_schema=False)
    def alert_page(alert_id: AlertId, who: PageUser):
        user, csrf = who
        alert = store.get(alert_id)
        contributions = [r for r in alert["reasons"] if isinstance(r.get("contribution"), (int, float))]
        top = max((r["contribution"] for r in contributions), default=0) or 1
        mine = alert["status"] == "open" or alert["assignee"] == user.name or user.is_lead
        from aedetect.review.alerts import describe_history

        return render("alert.html", user=user, csrf=csrf, a=alert, top=top, history=describe_history(alert["history"]),
                      related=store.related(alert), verdicts=store.verdicts(alert_id),
                      audit=store.audit(alert_id), can_decide=alert["status"] != "decided" and mine,
                      users=store.users() if user.is_lead else [], verdict_names=VERDICTS)

    @app.post("/alerts/{alert_id}/claim", include_in_schema=False)
    def claim_page(alert_id: AlertId, who: FormUser):
        store.claim(alert_id, who[0])
        return RedirectResponse(f"/alerts/{alert_id}", 303)

    @app.post("/alerts/{alert_id}/verdict", include_in_schema=False)
    async def verdict_page(alert_id: AlertId, request: Request, who: FormUser):
        form = await request.form()
        store.decide(alert_id, who[0], str(form.get("verdict", "")), str(form.get("note", "")))
        return RedirectResponse(f"/queue?done={alert_id}", 303)

    @app.post("/alerts/{alert_id}/reopen", include_in_schema=False)
    def reopen_page(alert_id: AlertId, who: FormUser):
        store.reopen(alert_id, who[0])
        return RedirectResponse(f"/alerts/{alert_id}", 303)

    @app.post("/alerts/{alert_id}/assign", include_in_schema=False)
    async def assign_page(alert_id: AlertId, request: Request, who: FormUser):
        form = await request.form()
        store.assign(alert_id, who[0], str(form.get("assignee", "")))
        return RedirectResponse(f"/alerts/{alert_id}", 303)

    @app.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    def dashboard_page(who: PageUser, days: int = Query(30, ge=1, le=366)):
        from aedetect.review.dashboard import daily_plot

        user, csrf = who
        daily = store.daily(days)
        return render("dashboard.html", user=user, csrf=csrf, daily=daily, days=days, counts=store.counts(),
                      verdicts=store.verdict_counts(), plot=daily_plot(daily) if daily else None)

    # -- JSON API -------------------------------------------------------------------------------

    @app.get("/api/alerts", response_model=AlertList, responses=_problems(401))
    def api_alerts(user: ApiUser, status: Status = "open", model: str | None = None, reason: str | None = None,
                   since: date | None = None, until: date | None = None, order: Order = "score",
                   limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0)):
        """Alerts in `order`, newest state; `status=any` for every status; `until` includes its day."""
        alerts, total = store.list_alerts(status=None if status == "any" else status, model=model, reason=reason,
                                          since=_start_of(since), until=_next_day(_start_of(until)),
                                          order=order, limit=limit, offset=offset)
        return {"alerts": alerts, "total": total}

    @app.post("/api/alerts/next", response_model=AlertDetail,
              responses={204: {"description": "no open alert matches"}, **_problems(401)})
    def api_next(user: ApiUser, order: Order = "score", model: str | None = None, reason: str | None = None):
        """Claim the first open alert in `order` (and the filters) for the caller."""
        got = store.claim_next(user, order=order, model=model, reason=reason)
        return Response(status_code=204) if got is None else got

    @app.get("/api/alerts/{alert_id}", response_model=AlertDetail, responses=_problems(401, 404))
    def api_alert(alert_id: AlertId, user: ApiUser):
        return store.get(alert_id)

    @app.post("/api/alerts/{alert_id}/claim", response_model=AlertDetail, responses=_problems(401, 404, 409))
    def api_claim(alert_id: AlertId, user: ApiUser):
        return store.claim(alert_id, user)

    @app.post("/api/alerts/{alert_id}/verdict", response_model=AlertDetail,
              responses=_problems(400, 401, 403, 404, 409))
    def api_verdict(alert_id: AlertId, body: VerdictIn, user: ApiUser):
        return store.decide(alert_id, user, body.verdict, body.note)

    @app.post("/api/alerts/{alert_id}/reopen", response_model=AlertDetail,
              responses=_problems(401, 403, 404, 409))
    def api_reopen(alert_id: AlertId, user: ApiUser):
        return store.reopen(alert_id, user)

    @app.post("/api/alerts/{alert_id}/assign", response_model=AlertDetail,
              responses=_problems(400, 401, 403, 404, 409))
    def api_assign(alert_id: AlertId, body: AssignIn, user: ApiUser):
        return store.assign(alert_id, user, body.assignee)

    @app.get("/api/alerts/{alert_id}/history", response_model=AuditList, responses=_problems(401, 404))
    def api_history(alert_id: AlertId, user: ApiUser):
        return {"alert_id": alert_id, "entries": store.audit(alert_id)}

    @app.get("/api/stats", responses=_problems(401))
    def api_stats(user: ApiUser, days: int = Query(30, ge=1, le=366)) -> dict:
        return {"counts": store.counts(), "verdicts": store.verdict_counts(), "daily": store.daily(days)}

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"status": "ok"}

    return app


def _fmt(value, spec: str = ".4g"):
    """A number for a page: formatted by `spec`; None as nothing; anything else as it is."""
    if value is None:
        return ""
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _start_of(day: date | None) -> datetime | None:
    return None if day is None else datetime(day.year, day.month, day.day)


def _next_day(day: datetime | None) -> datetime | None:
    """`until` is inclusive of its day."""
    return None if day is None else day + timedelta(days=1)


def _local(path: str) -> str:
    """Only a path on this site after login (no open redirect)."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/queue"
