/* The Cockpit page of migrated.
 *
 * Everything goes through cockpit.dbus() to org.migrated.Manager1 on the system bus: the
 * control requests as JSON through its Call member (answered as the socket answers them),
 * live figures from its Progress, JobEvent and Alert signals. The bus policy decides who may
 * do what; a caller it refuses sees the "not allowed" page.
 *
 * Views (cockpit.location): overview (/), jobs (/jobs), a job (/job/ID), batches (/batches),
 * a batch (/batch/NAME).
 */
"use strict";

const BUS_NAME = "org.migrated.Manager1";
const PATH = "/org/migrated/Manager1";
const IFACE = "org.migrated.Manager1";
const REFRESH_MS = 3000;
const COLUMNS = [
    ["name", "Name"], ["status", "Status"], ["progress", "Progress"], ["folder", "Current folder"],
    ["speed", "Speed"], ["eta", "ETA"], ["tags", "Tags"], ["priority", "Priority"], ["batch", "Batch"],
];

const state = {
    jobs: [],            // JobSummary rows
    batches: [],         // BatchSummary rows
    batchOf: {},         // job id -> batch name
    alerts: [],          // AlertRow rows
    endpoints: [],       // EndpointRow rows
    rates: {},           // job id -> {samples: [[t, items, bytes]], series: [[t, msg/s, MB/s]]}
    history: {},         // job id -> ThroughputSample list: the daemon's last hour (the chart's past)
    events: {},          // job id -> EventRow list (the job page's live events)
    detail: null,        // the job page's JobDetail
    sort: { key: "name", up: true },
    columns: JSON.parse(window.localStorage.getItem("migrated-columns") || "null") ||
        COLUMNS.map(c => c[0]),
    filter: { text: "", status: "", tag: "", batch: "" },
    denied: null,
    connection: "connecting",
};

let client = null;

function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v === undefined || v === null || v === false) continue;
        if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
        else if (k === "class") e.className = v;
        else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
        if (c === null || c === undefined || c === false) continue;
        e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
}

function mb(bytes) { return (bytes / 1e6).toFixed(1) + " MB"; }
function pct(done, total) { return total > 0 ? Math.min(100, 100 * done / total) : 0; }
function when(unix) { return unix ? new Date(unix * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : ""; }
function duration(secs) {
    if (!isFinite(secs) || secs < 0) return "";
    secs = Math.round(secs);
    const h = Math.floor(secs / 3600), m = Math.floor(secs % 3600 / 60), s = secs % 60;
    return h ? `${h} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
}

/* The status's colour class: blue while in progress, green complete, red errors. */
function tone(status) {
    switch (status) {
    case "Completed": return "ok";
    case "CompletedWithErrors": return "warn";
    case "Failed": case "Cancelled": return "bad";
    case "Stopped": case "Stopping": case "Queued": case "WaitingForCredentials":
    case "WaitingForStore": return "idle";
    default: return "run";
    }
}
const LABELS = {
    Queued: "Queued", WaitingForCredentials: "Waiting for credentials", WaitingForStore: "Waiting for the store",
    Connecting: "Connecting", Authenticating: "Authenticating", ScanningFolders: "Scanning folders",
    CreatingFolders: "Creating folders", Copying: "Copying", Finalizing: "Finalizing", Completed: "Completed",
    CompletedWithErrors: "Completed with errors", Failed: "Failed", Stopping: "Stopping", Stopped: "Stopped",
    Cancelled: "Cancelled",
};
function label(status) { return LABELS[status] || status || ""; }
function running(status) {
    return ["Connecting", "Authenticating", "ScanningFolders", "CreatingFolders", "Copying", "Finalizing"]
        .includes(status);
}

/* ---- D-Bus ---- */

function isDenied(err) {
    const text = `${err && (err.name || "")} ${err && (err.problem || "")} ${err && (err.message || "")}`;
    return /AccessDenied|access-denied|not-authorized|Denied/.test(text);
}

/* One control request through Call; resolves with the reply, rejects with its words. */
function request(req) {
    // A native promise around Cockpit's, so that a throw in a handler is a rejection.
    return new Promise((resolve, reject) => {
        // The signature given: no introspection first (which the policy may refuse too).
        client.call(PATH, IFACE, "Call", [JSON.stringify(req)], { type: "s" }).then(resolve, reject);
    })
        .then(([reply]) => {
            const r = JSON.parse(reply);
            if (r.reply === "error") {
                const e = new Error(r.message);
                e.kind = r.kind;
                throw e;
            }
            return r;
        })
        .catch(err => {
            if (isDenied(err) || (err && err.kind === "denied")) {
                state.denied = err.message || String(err);
                render();
            }
            throw err;
        });
}

function connect() {
    client = cockpit.dbus(BUS_NAME, { bus: "system" });
    client.addEventListener("close", (_ev, options) => {
        setConnection("disconnected", options && options.problem);
    });
    client.addEventListener("owner", (_ev, owner) => {
        if (owner) {
            setConnection("live");
            refresh();
        } else {
            setConnection("reconnecting");
        }
    });
    client.subscribe({ interface: IFACE, path: PATH, member: "Progress" }, (_p, _i, _s, args) => onProgress(args));
    client.subscribe({ interface: IFACE, path: PATH, member: "JobEvent" }, (_p, _i, _s, args) => onEvent(args));
    client.subscribe({ interface: IFACE, path: PATH, member: "Alert" }, (_p, _i, _s, args) => onAlert(args));
}

function setConnection(how, problem) {
    state.connection = how;
    const c = document.getElementById("connection");
    c.className = "connection " + how;
    c.textContent = {
        live: "● Live",
        reconnecting: "● Reconnecting (the daemon restarted)",
        disconnected: "● Disconnected" + (problem ? ` (${problem})` : ""),
        connecting: "Connecting…",
    }[how];
}

/* ---- live figures ---- */

function sample(id, items, bytes) {
    const now = Date.now() / 1000;
    const r = state.rates[id] || (state.rates[id] = { samples: [], series: [] });
    r.samples.push([now, items, bytes]);
    while (r.samples.length > 2 && now - r.samples[0][0] > 10) r.samples.shift();
    const [t0, i0, b0] = r.samples[0];
    const dt = now - t0;
    if (dt >= 0.5) {
        r.msgs = Math.max(0, (items - i0) / dt);
        r.bytes = Math.max(0, (bytes - b0) / dt);
        const last = r.series[r.series.length - 1];
        if (!last || now - last[0] >= 1) r.series.push([now, r.msgs, r.bytes / 1e6]);
        if (r.series.length > 3600) r.series.shift();
    }
}

function rate(id) {
    const r = state.rates[id];
    const j = state.jobs.find(x => x.id === id);
    if (!r || !j || !running(j.status) || Date.now() / 1000 - r.samples[r.samples.length - 1][0] > 15) {
        return { msgs: 0, bytes: 0 };
    }
    return { msgs: r.msgs || 0, bytes: r.bytes || 0 };
}

function onProgress([id, status, itemsDone, itemsTotal, bytesDone, bytesTotal, folder, name]) {
    setConnection("live");
    let j = state.jobs.find(x => x.id === id);
    if (!j) {
        j = { id, name, tags: [], priority: 0 };
        state.jobs.push(j);
    }
    const code = Object.keys(LABELS).find(k => LABELS[k] === status) || status;
    Object.assign(j, {
        status: code, items_done: itemsDone, items_total: itemsTotal, bytes_done: bytesDone,
        bytes_total: bytesTotal, current_folder: folder || null,
    });
    sample(id, itemsDone, bytesDone);
    scheduleRender();
}

function onEvent([id, level, seq, message]) {
    const list = state.events[id];
    if (list && !list.some(e => e.seq === seq)) {
        list.push({ seq, time: Math.floor(Date.now() / 1000), level, message });
        scheduleRender();
    }
}

function onAlert([id, job, level, kind, message, whatToDo]) {
    if (!state.alerts.some(a => a.id === id)) {
        const j = state.jobs.find(x => x.id === job);
        state.alerts.push({
            id, job, job_name: j ? j.name : job, level, kind, message, what_to_do: whatToDo,
            time: Math.floor(Date.now() / 1000), batch: state.batchOf[job] || null,
        });
        scheduleRender();
    }
}

let renderPending = false;
function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    window.setTimeout(() => { renderPending = false; render(); }, 250);
}

/* ---- loading ---- */

let refreshing = null;
function refresh() {
    if (refreshing) return refreshing;
    const view = cockpit.location.path;
    const loads = [
        request({ request: "list" }).then(r => {
            state.jobs = r.jobs;
            for (const j of r.jobs) sample(j.id, j.items_done, j.bytes_done);
        }),
        request({ request: "list_batches" }).then(r => {
            state.batches = r.batches;
            return Promise.all(r.batches.map(b => request({ request: "batch_status", name: b.name }).then(s => {
                for (const j of s.jobs) state.batchOf[j.id] = b.name;
            })));
        }),
        request({ request: "alerts" }).then(r => { state.alerts = r.alerts; }),
        request({ request: "endpoint_list" }).then(r => { state.endpoints = r.endpoints; }),
    ];
    if (view[0] === "job" && view[1]) {
        loads.push(request({ request: "status", job: view[1] }).then(r => {
            state.detail = r.job;
            const known = state.events[view[1]] || [];
            const seqs = new Set(known.map(e => e.seq));
            state.events[view[1]] = known.concat(r.job.events.filter(e => !seqs.has(e.seq)))
                .sort((a, b) => a.seq - b.seq);
        }));
        // What the job copied before this page opened: the daemon keeps the last hour.
        loads.push(request({ request: "throughput", job: view[1] }).then(r => {
            for (const j of r.jobs) state.history[j.id] = j.samples;
        }));
    }
    refreshing = Promise.all(loads)
        .then(() => { setConnection("live"); state.error = null; })
        .catch(err => { if (!state.denied) state.error = err.message || String(err); })
        .finally(() => { refreshing = null; render(); });
    return refreshing;
}

/* ---- views ---- */

function render() {
    const main = document.getElementById("main");
    const view = cockpit.location.path;
    for (const a of document.querySelectorAll("#nav a")) {
        const v = a.dataset.view;
        a.classList.toggle("active", (v === "overview" && !view[0]) || v === view[0] ||
            (v === "jobs" && view[0] === "job") || (v === "batches" && view[0] === "batch"));
    }
    if (state.denied) {
        main.replaceChildren(notAllowed());
        return;
    }
    // Keep what the user is typing: re-render only the parts that are not being edited.
    const focused = document.activeElement && document.activeElement.id;
    const pos = document.activeElement && document.activeElement.selectionStart;
    let content;
    switch (view[0]) {
    case "jobs": content = jobsView(); break;
    case "job": content = jobView(view[1]); break;
    case "batches": content = batchesView(); break;
    case "batch": content = batchView(decodeURIComponent(view[1] || "")); break;
    default: content = overview();
    }
    const keep = main.querySelector("[data-keep]");
    main.replaceChildren(...(state.error ? [el("div", { class: "alert bad", id: "error" }, state.error)] : []), content);
    if (keep) {
        const slot = main.querySelector(`[data-keep="${keep.dataset.keep}"]`);
        if (slot) slot.replaceWith(keep);
    }
    if (focused) {
        const f = document.getElementById(focused);
        if (f) {
            f.focus();
            if (pos !== undefined && pos !== null && f.setSelectionRange) f.setSelectionRange(pos, pos);
        }
    }
    for (const c of main.querySelectorAll("canvas[data-job]")) drawChart(c, c.dataset.job);
}

function notAllowed() {
    return el("section", { class: "card denied", id: "not-allowed" },
        el("h2", {}, "Not allowed"),
        el("p", {}, "Your account may not read or drive the mail migrations: the D-Bus policy of ",
            el("code", {}, BUS_NAME), " refused the request."),
        el("p", {}, "The policy (/usr/share/dbus-1/system.d/org.migrated.Manager1.conf) lets root and the members of the group ",
            el("code", {}, "migrated"), " call the daemon. Ask an administrator to run ",
            el("code", {}, "adduser YOU migrated"), ", then log in to Cockpit again; or switch to administrative access."),
        el("p", { class: "muted" }, "The bus said: ", state.denied));
}

function tile(title, id, ...body) {
    return el("section", { class: "card tile", id }, el("h2", {}, title), ...body);
}

function feed(level, id) {
    const items = state.alerts.filter(a => a.level === level).slice(-8).reverse();
    return tile(level === "good" ? "Good news" : "Bad news", id,
        items.length === 0 ? el("p", { class: "muted" }, "Nothing.") :
            el("ul", { class: "feed " + level }, items.map(a => el("li", { "data-alert": a.id },
                el("div", { class: "feed-head" }, el("a", { href: `#/job/${a.job}` }, a.job_name),
                    el("span", { class: "muted" }, " · " + when(a.time))),
                el("div", { class: "alert-message" }, a.message),
                a.what_to_do ? el("div", { class: "todo" }, "What to do: " + a.what_to_do) : null))));
}

function overview() {
    const counts = {};
    for (const j of state.jobs) counts[j.status] = (counts[j.status] || 0) + 1;
    let msgs = 0, bytes = 0;
    for (const j of state.jobs) { const r = rate(j.id); msgs += r.msgs; bytes += r.bytes; }
    const sides = {};
    for (const j of state.jobs) {
        for (const [side, who] of [["source", j.source], ["destination", j.destination]]) {
            const host = (who || "").split("@").pop();
            const key = side + " " + host;
            sides[key] = sides[key] || { side, host, jobs: 0 };
            sides[key].jobs += 1;
        }
    }
    return el("div", { class: "tiles" },
        tile("Jobs", "tile-jobs",
            el("p", { class: "big" }, state.jobs.length, el("span", { class: "muted" }, " jobs")),
            el("ul", { class: "counts" }, Object.keys(counts).sort().map(s =>
                el("li", { "data-status": s }, el("span", { class: "dot " + tone(s) }), `${label(s)}: `,
                    el("b", {}, counts[s]))))),
        tile("Throughput now", "tile-throughput",
            el("p", { class: "big", id: "throughput-msgs" }, msgs.toFixed(1), el("span", { class: "muted" }, " messages/s")),
            el("p", { class: "big", id: "throughput-mbs" }, (bytes / 1e6).toFixed(2), el("span", { class: "muted" }, " MB/s")),
            el("p", { class: "muted" }, state.jobs.filter(j => running(j.status)).length + " jobs running")),
        feed("good", "tile-good"),
        feed("bad", "tile-bad"),
        tile("Endpoints", "tile-endpoints",
            el("table", { class: "table" },
                el("thead", {}, el("tr", {}, el("th", {}, "Side"), el("th", {}, "Host"), el("th", {}, "Jobs"))),
                el("tbody", {}, Object.values(sides).map(s =>
                    el("tr", {}, el("td", {}, s.side), el("td", {}, s.host), el("td", {}, s.jobs))),
                state.endpoints.map(e => el("tr", {}, el("td", {}, "named"),
                    el("td", {}, `${e.endpoint.name} (${e.endpoint.connection ? e.endpoint.connection.host : ""})`),
                    el("td", {}, (e.jobs || []).length)))))));
}

function progressBar(j) {
    const items = pct(j.items_done, j.items_total), bytes = pct(j.bytes_done, j.bytes_total);
    return el("div", { class: "progress " + tone(j.status), title: `${items.toFixed(0)} % of the messages, ${bytes.toFixed(0)} % of the bytes` },
        el("div", { class: "bar" }, el("div", { class: "fill", style: `width: ${items}%` })),
        el("div", { class: "bar thin" }, el("div", { class: "fill", style: `width: ${bytes}%` })),
        el("div", { class: "progress-text" }, `${j.items_done}/${j.items_total} messages · ${mb(j.bytes_done)}/${mb(j.bytes_total)}`));
}

function eta(j) {
    const r = rate(j.id);
    if (!running(j.status) || r.bytes <= 0 || j.bytes_total <= j.bytes_done) return "";
    return duration((j.bytes_total - j.bytes_done) / r.bytes);
}

function cell(j, key) {
    switch (key) {
    case "name": return el("a", { href: `#/job/${j.id}`, class: "job-link" }, j.name);
    case "status": return el("span", { class: "label " + tone(j.status) }, label(j.status));
    case "progress": return progressBar(j);
    case "folder": return j.current_folder || "";
    case "speed": {
        const r = rate(j.id);
        return running(j.status) ? `${r.msgs.toFixed(1)} msg/s · ${(r.bytes / 1e6).toFixed(2)} MB/s` : "";
    }
    case "eta": return eta(j);
    case "tags": return (j.tags || []).map(t => el("span", { class: "tag" }, t));
    case "priority": return String(j.priority);
    case "batch": return state.batchOf[j.id] ? el("a", { href: `#/batch/${encodeURIComponent(state.batchOf[j.id])}` }, state.batchOf[j.id]) : "";
    }
    return "";
}

function sortValue(j, key) {
    switch (key) {
    case "progress": return pct(j.items_done, j.items_total);
    case "speed": return rate(j.id).bytes;
    case "priority": return j.priority;
    case "tags": return (j.tags || []).join(",");
    case "batch": return state.batchOf[j.id] || "";
    case "folder": return j.current_folder || "";
    case "eta": return eta(j);
    case "status": return label(j.status);
    default: return (j.name || "").toLowerCase();
    }
}

function jobsTable(jobs, id) {
    const f = state.filter;
    const text = f.text.toLowerCase();
    let rows = jobs.filter(j =>
        (!text || j.name.toLowerCase().includes(text) || (j.current_folder || "").toLowerCase().includes(text)) &&
        (!f.status || j.status === f.status) &&
        (!f.tag || (j.tags || []).includes(f.tag)) &&
        (!f.batch || state.batchOf[j.id] === f.batch));
    const { key, up } = state.sort;
    rows = rows.slice().sort((a, b) => {
        const x = sortValue(a, key), y = sortValue(b, key);
        return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
    });
    const cols = COLUMNS.filter(c => state.columns.includes(c[0]));
    return el("table", { class: "table jobs", id },
        el("thead", {}, el("tr", {}, cols.map(([k, title]) =>
            el("th", {
                "data-sort": k, class: key === k ? (up ? "sorted up" : "sorted down") : "",
                onclick: () => { state.sort = { key: k, up: key === k ? !up : true }; render(); },
            }, title)))),
        el("tbody", {}, rows.length === 0 ? el("tr", {}, el("td", { colspan: cols.length, class: "muted" }, "No jobs.")) :
            rows.map(j => el("tr", { "data-job": j.id, "data-name": j.name }, cols.map(([k]) => el("td", { "data-col": k }, cell(j, k)))))));
}

function select(id, value, options, onchange) {
    return el("select", { id, onchange: e => onchange(e.target.value) },
        options.map(([v, t]) => el("option", { value: v, selected: v === value }, t)));
}

function toolbar() {
    const f = state.filter;
    const tags = [...new Set(state.jobs.flatMap(j => j.tags || []))].sort();
    const statuses = [...new Set(state.jobs.map(j => j.status))].sort();
    return el("div", { class: "toolbar" },
        el("input", {
            id: "search", type: "search", placeholder: "Search by name or folder", value: f.text,
            oninput: e => { f.text = e.target.value; render(); },
        }),
        select("filter-status", f.status, [["", "Any status"], ...statuses.map(s => [s, label(s)])], v => { f.status = v; render(); }),
        select("filter-tag", f.tag, [["", "Any tag"], ...tags.map(t => [t, t])], v => { f.tag = v; render(); }),
        select("filter-batch", f.batch, [["", "Any batch"], ...state.batches.map(b => [b.name, b.name])], v => { f.batch = v; render(); }),
        el("details", { class: "columns", id: "columns" }, el("summary", {}, "Columns"),
            COLUMNS.map(([k, t]) => el("label", {}, el("input", {
                type: "checkbox", checked: state.columns.includes(k), "data-column": k,
                onchange: e => {
                    state.columns = e.target.checked ? [...state.columns, k] : state.columns.filter(c => c !== k);
                    window.localStorage.setItem("migrated-columns", JSON.stringify(state.columns));
                    render();
                    document.getElementById("columns").open = true;
                },
            }), " " + t))));
}

function jobsView() {
    return el("section", { class: "card" }, el("h2", {}, "Jobs"), toolbar(), jobsTable(state.jobs, "jobs-table"));
}

/* ---- the job page ---- */

function confirmThen(title, text, action) {
    const d = document.getElementById("confirm");
    document.getElementById("confirm-title").textContent = title;
    document.getElementById("confirm-text").textContent = text;
    d.onclose = () => { if (d.returnValue === "ok") action(); };
    d.returnValue = "";
    d.showModal();
}

function act(job, req, message) {
    state.notice = null;
    return request(req)
        .then(r => {
            state.notice = message + (r.status ? ` Status: ${label(r.status)}.` : "");
            return refresh();
        })
        .catch(err => { state.notice = null; state.error = err.message || String(err); render(); });
}

function actions(d) {
    const s = d.summary, job = s.id, name = s.name;
    const button = (text, id, cls, f) => el("button", { id, class: cls, onclick: f }, text);
    const simple = (action, done) => () => act(job, { request: "act", job, action }, done);
    return el("div", { class: "actions" },
        button("Pause", "action-pause", "secondary", simple("Pause", "Pause asked.")),
        button("Resume", "action-resume", "secondary", simple("Resume", "Resumed.")),
        button("Delta", "action-delta", "secondary", () => act(job, { request: "delta", job, source_secret: null, destination_secret: null }, "Delta started.")),
        button("Final delta", "action-final", "secondary", () => confirmThen("Run the final delta?",
            `The cutover of ${name}: its credentials are erased when it completes, and no recurring delta runs after it.`,
            () => act(job, { request: "delta", job, source_secret: null, destination_secret: null, final_run: true }, "Final delta started."))),
        button("Reset", "action-reset", "secondary", () => confirmThen("Reset this job?",
            `${name} forgets what it copied; the next run compares every message again.`, simple("Reset", "Reset."))),
        button("Clear credentials", "action-clear-credentials", "secondary", () => confirmThen("Clear the credentials?",
            `Both passwords of ${name} are erased from the store; it waits for new ones.`,
            () => act(job, { request: "clear_credentials", job, source: true, destination: true }, "Credentials cleared."))),
        button("Cancel", "action-cancel", "danger", () => confirmThen("Cancel this job?",
            `${name} stops and is marked Cancelled; its credentials are erased.`, simple("Cancel", "Cancelled."))),
        button("Delete", "action-delete", "danger", () => confirmThen("Delete this job?",
            `${name}, its ledger, report and events are deleted. This cannot be undone.`,
            () => request({ request: "act", job, action: "Delete" }).then(() => { cockpit.location.go(["jobs"]); refresh(); })
                .catch(err => { state.error = err.message; render(); }))),
        el("span", { class: "inline" },
            el("label", { for: "priority" }, "Priority "),
            el("input", { id: "priority", type: "number", min: 0, value: s.priority, class: "narrow" }),
            button("Set", "action-priority", "secondary", () => act(job,
                { request: "set_priority", job, priority: Number(document.getElementById("priority").value) }, "Priority set."))),
        el("span", { class: "inline" },
            el("input", { id: "tag", placeholder: "tag", class: "narrow" }),
            button("Add tag", "action-tag-add", "secondary", () => act(job,
                { request: "set_tags", job, add: [document.getElementById("tag").value], remove: [] }, "Tag added.")),
            button("Remove tag", "action-tag-remove", "secondary", () => act(job,
                { request: "set_tags", job, add: [], remove: [document.getElementById("tag").value] }, "Tag removed."))));
}

function phase(s) {
    switch (s.status) {
    case "Queued": case "WaitingForCredentials": case "WaitingForStore": return "Initializing";
    case "Connecting": case "Authenticating": return "Connecting";
    case "ScanningFolders": return "Scanning folders";
    case "CreatingFolders": return "Creating folders";
    case "Copying": return "Copying messages";
    case "Finalizing": return "Finalizing";
    case "Completed": case "CompletedWithErrors": return "Complete";
    case "Failed": return "Error";
    default: return label(s.status);
    }
}

function connectionState(text) {
    const t = text || "Not connected";
    const cls = /^Failed/.test(t) ? "bad" : /^Authenticated/.test(t) ? "ok" : "run";
    return el("span", { class: "label " + cls }, t);
}

/* The chart's points [t, msg/s, MB/s]: the daemon's history up to the first live point, then
 * the live ones (finer, from the signals since this page opened). */
function chartSeries(id) {
    const live = (state.rates[id] || {}).series || [];
    const since = live.length ? live[0][0] : Infinity;
    const past = (state.history[id] || []).filter(p => p.secs > 0 && p.time < since)
        .map(p => [p.time, p.items / p.secs, p.bytes / p.secs / 1e6]);
    return past.concat(live);
}

function drawChart(canvas, id) {
    const s = chartSeries(id);
    canvas.dataset.points = s.length;
    canvas.dataset.first = s.length ? s[0][0] : "";
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    ctx.font = "12px sans-serif";
    ctx.fillStyle = "#6a6e73";
    if (s.length < 2) {
        ctx.fillText("The chart fills while the job copies (the daemon keeps the last hour).", 10, h / 2);
        return;
    }
    const t0 = s[0][0], t1 = s[s.length - 1][0];
    const maxMsg = Math.max(1, ...s.map(p => p[1])), maxMb = Math.max(0.01, ...s.map(p => p[2]));
    const line = (idx, max, colour) => {
        ctx.strokeStyle = colour;
        ctx.lineWidth = 2;
        ctx.beginPath();
        s.forEach((p, i) => {
            const x = 40 + (w - 50) * (p[0] - t0) / Math.max(1, t1 - t0);
            const y = h - 20 - (h - 40) * p[idx] / max;
            if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
        });
        ctx.stroke();
    };
    ctx.strokeStyle = "#d2d2d2";
    ctx.strokeRect(40, 20, w - 50, h - 40);
    line(1, maxMsg, "#0066cc");
    line(2, maxMb, "#3e8635");
    ctx.fillStyle = "#0066cc";
    ctx.fillText(`messages/s (max ${maxMsg.toFixed(1)})`, 45, 14);
    ctx.fillStyle = "#3e8635";
    ctx.fillText(`MB/s (max ${maxMb.toFixed(2)})`, 250, 14);
    ctx.fillStyle = "#6a6e73";
    ctx.fillText(duration(t1 - t0), w - 60, h - 5);
}

function jobView(id) {
    const d = state.detail && state.detail.summary.id === id ? state.detail : null;
    if (!d) return el("p", { class: "muted" }, "Loading the job…");
    // The summary as the list and the signals have it now (fresher than the detail).
    const s = Object.assign({}, d.summary, state.jobs.find(j => j.id === id) || {});
    const events = (state.events[id] || []).slice(-200);
    const alerts = state.alerts.filter(a => a.job === id);
    const folders = d.folders.length;
    const avg = d.duration_secs > 0 ? (s.items_done / d.duration_secs * 60).toFixed(0) + " messages/min" : "";
    return el("div", { class: "job" },
        el("section", { class: "card" },
            el("h2", {}, el("a", { href: "#/jobs" }, "Jobs"), " › ", el("span", { id: "job-name" }, s.name), " ",
                el("span", { class: "label " + tone(s.status), id: "job-status" }, label(s.status))),
            state.notice ? el("div", { class: "alert ok", id: "notice" }, state.notice) : null,
            actions(d),
            el("div", { class: "grid" },
                el("div", {}, el("h3", {}, "Connections"),
                    el("p", {}, "Source ", el("code", {}, s.source), " ", el("span", { id: "source-connection" }, connectionState(s.source_connection))),
                    el("p", {}, "Destination ", el("code", {}, s.destination), " ", el("span", { id: "destination-connection" }, connectionState(s.destination_connection))),
                    s.throttled_until && s.throttled_until * 1000 > Date.now() ? el("p", { class: "todo" }, "Throttled by the server until " + when(s.throttled_until)) : null,
                    s.error ? el("p", { class: "alert bad" }, s.error) : null),
                el("div", {}, el("h3", {}, "Phase"), el("p", { class: "big", id: "job-phase" }, phase(s)),
                    el("div", { id: "job-progress" }, progressBar(s)),
                    el("p", {}, "Current folder: ", el("b", { id: "job-folder" }, s.current_folder || "—")),
                    el("p", {}, "ETA: ", eta(s) || "—")),
                el("div", {}, el("h3", {}, "Summary"),
                    el("table", { class: "table compact", id: "job-summary" }, el("tbody", {},
                        [["Folders", folders], ["Messages", `${s.items_done} of ${s.items_total}`], ["Size", `${mb(s.bytes_done)} of ${mb(s.bytes_total)}`],
                            ["Excluded", s.excluded], ["Failed", s.failed], ["Duration", duration(d.duration_secs)], ["Average speed", avg],
                            ["Priority", s.priority], ["Tags", (s.tags || []).join(", ")], ["Batch", state.batchOf[id] || ""],
                            ["Credentials", s.credentials ? "stored" : "erased"]]
                            .map(([k, v]) => el("tr", { "data-row": k }, el("th", {}, k), el("td", {}, v)))))))),
        el("section", { class: "card" }, el("h2", {}, "Throughput"),
            el("canvas", { width: 900, height: 200, "data-job": id, id: "throughput-chart" })),
        el("section", { class: "card" }, el("h2", {}, "Alerts"), alertList(alerts, "job-alerts")),
        el("section", { class: "card" }, el("h2", {}, "Folders"),
            el("table", { class: "table", id: "job-folders" },
                el("thead", {}, el("tr", {}, ["Source folder", "Destination", "Messages", "Copied", "Before", "Excluded", "Failed", "Size", "Status"].map(t => el("th", {}, t)))),
                el("tbody", {}, d.folders.map(f => el("tr", {},
                    el("td", {}, f.source), el("td", {}, f.destination), el("td", {}, f.messages), el("td", {}, f.copied),
                    el("td", {}, f.already_copied), el("td", {}, f.excluded), el("td", {}, f.failed), el("td", {}, mb(f.bytes || 0)),
                    el("td", {}, f.error ? el("span", { class: "label bad" }, f.error) : el("span", { class: "label ok" }, "OK"))))))),
        el("section", { class: "card" }, el("h2", {}, "Verification"),
            d.verification.length === 0 ? el("p", { class: "muted" }, "Not verified yet.") :
                el("table", { class: "table", id: "job-verification" },
                    el("caption", {}, "Verified " + when(d.verified_at)),
                    el("thead", {}, el("tr", {}, ["Source folder", "Destination", "Source", "Destination messages", "Missing"].map(t => el("th", {}, t)))),
                    el("tbody", {}, d.verification.map(v => el("tr", {},
                        el("td", {}, v.source), el("td", {}, v.destination), el("td", {}, v.source_messages),
                        el("td", {}, v.destination_messages), el("td", {}, (v.missing || []).length)))))),
        el("section", { class: "card" }, el("h2", {}, "Live events"),
            el("ol", { class: "events", id: "job-events" }, events.slice().reverse().map(e =>
                el("li", { class: "event " + e.level, "data-seq": e.seq },
                    el("span", { class: "muted" }, when(e.time).slice(11, 19) + " "), e.message)))));
}

function alertList(alerts, id) {
    if (alerts.length === 0) return el("p", { class: "muted", id }, "No alerts.");
    return el("div", {},
        el("button", {
            class: "secondary", id: id + "-clear-all",
            onclick: () => Promise.all(alerts.map(a => request({ request: "clear_alerts", id: a.id }))).then(refresh),
        }, "Clear these alerts"),
        el("ul", { class: "feed", id }, alerts.slice().reverse().map(a =>
            el("li", { class: a.level, "data-alert": a.id },
                el("div", { class: "feed-head" }, el("span", { class: "label " + (a.level === "good" ? "ok" : "bad") }, a.level === "good" ? "Good news" : "Bad news"),
                    " ", el("b", {}, a.kind), el("span", { class: "muted" }, " · " + when(a.time)),
                    el("button", { class: "link", onclick: () => request({ request: "clear_alerts", id: a.id }).then(refresh) }, "Clear")),
                el("div", { class: "alert-message" }, a.message),
                a.what_to_do ? el("div", { class: "todo" }, "What to do: " + a.what_to_do) : null))));
}

/* ---- batches ---- */

function batchesView() {
    return el("div", {},
        el("section", { class: "card" }, el("h2", {}, "Batches"),
            el("table", { class: "table", id: "batches-table" },
                el("thead", {}, el("tr", {}, ["Name", "Mailboxes", "Messages", "Failed", "Statuses"].map(t => el("th", {}, t)))),
                el("tbody", {}, state.batches.length === 0 ? el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No batches.")) :
                    state.batches.map(b => el("tr", { "data-batch": b.name },
                        el("td", {}, el("a", { href: `#/batch/${encodeURIComponent(b.name)}` }, b.name)),
                        el("td", {}, b.jobs), el("td", {}, progressBar({ status: "", items_done: b.items_done, items_total: b.items_total, bytes_done: 0, bytes_total: 0 })),
                        el("td", {}, b.failed), el("td", {}, b.statuses.map(([s, n]) => `${s}: ${n}`).join(", "))))))),
        el("section", { class: "card", "data-keep": "create-batch" }, createBatchForm()));
}

function createBatchForm() {
    const field = (id, text, attrs) => el("label", { class: "field" }, text, el("input", Object.assign({ id }, attrs || {})));
    const security = id => el("label", { class: "field" }, "Security",
        el("select", { id }, ["tls", "starttls", "plain"].map(s => el("option", { value: s }, s))));
    const errors = el("div", { id: "batch-errors" });
    const submit = async () => {
        errors.replaceChildren();
        const v = id => document.getElementById(id).value;
        const file = document.getElementById("batch-csv").files[0];
        if (!file) {
            errors.append(el("div", { class: "alert bad" }, "Choose the CSV file of the mailboxes (EmailAddress, UserName, Password, …)."));
            return;
        }
        const csv = await file.text();
        const side = (p) => {
            const e = { host: v(p + "-host"), security: v(p + "-security") };
            if (v(p + "-port")) e.port = Number(v(p + "-port"));
            return e;
        };
        const template = { source: side("src"), destination: side("dst") };
        if (v("dst-password")) template.destination.password = v("dst-password");
        try {
            await request({ request: "create_batch", name: v("batch-name"), template, csv });
            state.notice = `Batch ${v("batch-name")} created.`;
            await refresh();
            cockpit.location.go(["batch", v("batch-name")]);
        } catch (err) {
            // The daemon names every problem (file, line, field): one line each.
            const lines = String(err.message || err).split(/\n|; (?=Row )/).filter(l => l.trim());
            errors.replaceChildren(el("div", { class: "alert bad" }, el("b", {}, "The batch was not created:"),
                el("ul", { class: "csv-errors" }, lines.map(l => el("li", {}, l)))));
        }
    };
    return el("div", {},
        el("h2", {}, "New batch from a CSV"),
        el("div", { class: "form" },
            field("batch-name", "Name", { placeholder: "wave-1" }),
            el("label", { class: "field" }, "Mailboxes (CSV)", el("input", { id: "batch-csv", type: "file", accept: ".csv,text/csv" })),
            el("fieldset", {}, el("legend", {}, "Source server"),
                field("src-host", "Host"), field("src-port", "Port", { type: "number", class: "narrow" }), security("src-security")),
            el("fieldset", {}, el("legend", {}, "Destination server"),
                field("dst-host", "Host"), field("dst-port", "Port", { type: "number", class: "narrow" }), security("dst-security"),
                field("dst-password", "Shared password (rows without DestinationPassword)", { type: "password", autocomplete: "off" })),
            el("button", { id: "batch-create", class: "primary", onclick: submit }, "Create batch")),
        errors);
}

/* The batch's report as `migratectl report --batch NAME --format csv` writes it: the daemon
 * builds it (one implementation for both). */
function downloadReport(name) {
    return request({ request: "report_csv", batch: name }).then(r => {
        const blob = new Blob([r.csv], { type: "text/csv" });
        const a = el("a", { href: URL.createObjectURL(blob), download: `${name}-report.csv` });
        document.body.append(a);
        a.click();
        a.remove();
    }).catch(err => { state.error = err.message || String(err); render(); });
}

function batchView(name) {
    const b = state.batches.find(x => x.name === name);
    if (!b) return el("p", { class: "muted" }, `Loading batch ${name}…`);
    const jobs = state.jobs.filter(j => state.batchOf[j.id] === name);
    const sum = k => jobs.reduce((n, j) => n + (j[k] || 0), 0);
    return el("section", { class: "card" },
        el("h2", {}, el("a", { href: "#/batches" }, "Batches"), " › ", el("span", { id: "batch-name" }, name)),
        state.notice ? el("div", { class: "alert ok", id: "notice" }, state.notice) : null,
        el("div", { class: "grid" },
            el("div", {}, el("h3", {}, "Totals"),
                el("table", { class: "table compact", id: "batch-totals" }, el("tbody", {},
                    [["Mailboxes", b.jobs], ["Messages", `${sum("items_done")} of ${sum("items_total")}`],
                        ["Size", `${mb(sum("bytes_done"))} of ${mb(sum("bytes_total"))}`], ["Failed", sum("failed")],
                        ["Statuses", b.statuses.map(([s, n]) => `${s}: ${n}`).join(", ")]]
                        .map(([k, v]) => el("tr", { "data-row": k }, el("th", {}, k), el("td", {}, v)))))),
            el("div", {}, el("h3", {}, "Progress"), progressBar({ status: jobs.every(j => j.status === "Completed") ? "Completed" : "Copying",
                items_done: sum("items_done"), items_total: sum("items_total"), bytes_done: sum("bytes_done"), bytes_total: sum("bytes_total") }),
            el("button", { class: "secondary", id: "batch-report", onclick: () => downloadReport(name) }, "Download report (CSV)"))),
        el("h3", {}, "Mailboxes"), toolbar(), jobsTable(jobs, "batch-jobs"),
        el("h3", {}, "Alerts"), alertList(state.alerts.filter(a => state.batchOf[a.job] === name), "batch-alerts"));
}

/* ---- start ---- */

/* The view follows the location: Cockpit's event inside its shell, the hash standing alone. */
let shown = null;
function located() {
    const now = cockpit.location.path.join("/");
    if (now === shown) return;
    shown = now;
    state.notice = null;
    state.detail = null;
    render();
    refresh();
}
cockpit.addEventListener("locationchanged", located);
window.addEventListener("hashchange", located);
document.addEventListener("DOMContentLoaded", () => {
    connect();
    shown = cockpit.location.path.join("/");
    render();
    refresh();
    window.setInterval(() => { if (state.connection !== "disconnected") refresh(); }, REFRESH_MS);
});
