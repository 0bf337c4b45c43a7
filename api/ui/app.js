// reelflow run viewer: plain JavaScript, no build step, everything from this origin.
//
// Routes (in the URL fragment): `#/` lists executions and has the submit form;
// `#/executions/<id>` shows one execution's DAG, live from its Server-Sent Events stream.
// Every API call carries the API key, when one is stored, as `Authorization: Bearer`; that is
// why the event stream is read with fetch() rather than EventSource, which cannot send headers.
// The DOM is built with textContent only: nothing from the API is parsed as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "reelflow.apiKey";
  const PAGE_SIZE = 25;
  const RUNNING = new Set(["queued", "running"]);
  const JOB_DONE = new Set(["completed", "failed", "canceled", "skipped"]);
  const SVG_NS = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);

  class Unauthorized extends Error {}

  class HttpError extends Error {
    constructor(status, body) {
      super((body && body.detail) || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  const state = {
    apiKey: localStorage.getItem(KEY_STORAGE) || "",
    config: null, // GET /api/ui-config
    examples: null, // GET /api/ui/examples
    view: null, // the open ExecutionView
  };

  // ---------------------------------------------------------------- helpers

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
    });
  }

  function authHeaders(extra) {
    const headers = { ...(extra || {}) };
    if (state.apiKey) headers.Authorization = `Bearer ${state.apiKey}`;
    return headers;
  }

  async function api(path, { method = "GET", body, signal } = {}) {
    const init = { method, headers: authHeaders({ Accept: "application/json" }), signal };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    const response = await fetch(path, init);
    if (response.status === 401) throw new Unauthorized();
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = { detail: text }; }
    }
    if (!response.ok) throw new HttpError(response.status, data);
    return data;
  }

  function formatTime(iso) {
    if (!iso) return "—";
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
  }

  function timeNode(iso) {
    return iso ? el("time", { datetime: iso, text: formatTime(iso) }) : "—";
  }

  function formatDuration(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
    const seconds = Math.max(0, ms / 1000);
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
    return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  function span(startIso, endIso) {
    if (!startIso) return null;
    const end = endIso ? Date.parse(endIso) : Date.now();
    return end - Date.parse(startIso);
  }

  function formatCost(usd) {
    if (usd === null || usd === undefined) return "—";
    return `$${usd.toFixed(usd !== 0 && usd < 0.1 ? 4 : 2)}`;
  }

  function formatBytes(bytes) {
    if (bytes === null || bytes === undefined) return "";
    const units = ["B", "KB", "MB", "GB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
  }

  function badge(status, extraClass) {
    return el("span", { class: `badge status-${status} ${extraClass || ""}`.trim(), text: status });
  }

  function setBadge(node, status) {
    node.className = `badge status-${status}`;
    node.textContent = status;
  }

  function safeUrl(url) {
    try {
      const parsed = new URL(url, location.href);
      return ["http:", "https:", "blob:"].includes(parsed.protocol) ? parsed.href : null;
    } catch {
      return null;
    }
  }

  // ---------------------------------------------------------------- views and routing

  const VIEWS = ["loading", "auth-view", "home-view", "execution-view"];

  function show(id, title) {
    for (const view of VIEWS) $(view).hidden = view !== id;
    document.title = title ? `${title} · reelflow` : "reelflow";
    $("forget-key").hidden = !state.apiKey;
  }

  function needKey(message) {
    closeExecution();
    show("auth-view", "API key");
    $("auth-error").textContent = message || "";
    $("api-key").focus();
  }

  async function route() {
    closeExecution();
    try {
      if (!state.config) state.config = await api("/api/ui-config");
    } catch (error) {
      if (error instanceof Unauthorized) {
        needKey(state.apiKey ? "That API key was refused." : "");
        return;
      }
      show("loading");
      $("loading").textContent = `The API did not answer: ${error.message}`;
      return;
    }
    const match = /^#\/executions\/([^/]+)$/.exec(location.hash);
    if (match) openExecution(decodeURIComponent(match[1]));
    else openHome();
  }

  function handleError(error, target) {
    if (error instanceof Unauthorized) needKey("That API key was refused.");
    else if (target) target.textContent = error.message;
  }

  $("auth-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.apiKey = $("api-key").value.trim();
    localStorage.setItem(KEY_STORAGE, state.apiKey);
    $("api-key").value = "";
    state.config = null;
    route();
  });

  $("forget-key").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE);
    state.apiKey = "";
    state.config = null;
    state.examples = null;
    route();
  });

  // ---------------------------------------------------------------- home: list

  const list = { cursor: null, loading: false, observer: null, costQueue: [], costActive: 0 };

  function openHome() {
    show("home-view", "Executions");
    loadExamples();
    loadExecutions(true);
  }

  async function loadExecutions(reset) {
    if (list.loading) return;
    list.loading = true;
    $("list-error").textContent = "";
    const tbody = $("executions").tBodies[0];
    if (reset) {
      list.cursor = null;
      list.costQueue = [];
      if (list.observer) list.observer.disconnect();
    }
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if ($("status-filter").value) query.set("status", $("status-filter").value);
    if (!reset && list.cursor) query.set("cursor", list.cursor);
    try {
      const page = await api(`/api/executions?${query}`);
      if (reset) tbody.replaceChildren();
      for (const execution of page.executions) tbody.append(executionRow(execution));
      list.cursor = page.nextCursor;
      $("more").hidden = !page.nextCursor;
      $("list-empty").hidden = tbody.rows.length > 0;
    } catch (error) {
      handleError(error, $("list-error"));
    } finally {
      list.loading = false;
    }
  }

  function executionRow(execution) {
    const id = execution.executionId;
    const cost = el("td", { class: "num", text: "…" });
    const label = execution.metadata && typeof execution.metadata.example === "string"
      ? el("span", { class: "muted", text: ` ${execution.metadata.example}` })
      : null;
    const row = el(
      "tr",
      { "data-execution-id": id },
      el("td", {}, el("a", { href: `#/executions/${encodeURIComponent(id)}` }, el("code", { text: id })), label),
      el("td", {}, badge(execution.status)),
      el("td", {}, timeNode(execution.createdAt)),
      el("td", { class: "num", text: String(execution.jobCount) }),
      cost,
    );
    // The list carries no cost: fetch the status of rows as they scroll into view, a few at once.
    if (!list.observer) {
      list.observer = new IntersectionObserver((entries) => {
        for (const entry of entries) {
          if (!entry.isIntersecting) continue;
          list.observer.unobserve(entry.target);
          list.costQueue.push(entry.target);
        }
        pumpCosts();
      });
    }
    list.observer.observe(cost);
    cost.dataset.executionId = id;
    return row;
  }

  function pumpCosts() {
    while (list.costActive < 3 && list.costQueue.length) {
      const cell = list.costQueue.shift();
      if (!cell.isConnected) continue;
      list.costActive += 1;
      api(`/api/status/${encodeURIComponent(cell.dataset.executionId)}`)
        .then((status) => { cell.textContent = formatCost(status.costUsd); })
        .catch(() => { cell.textContent = "—"; })
        .finally(() => { list.costActive -= 1; pumpCosts(); });
    }
  }

  $("more").addEventListener("click", () => loadExecutions(false));
  $("refresh").addEventListener("click", () => loadExecutions(true));
  $("status-filter").addEventListener("change", () => loadExecutions(true));

  // ---------------------------------------------------------------- home: submit form

  async function loadExamples() {
    if (state.examples) return;
    try {
      state.examples = (await api("/api/ui/examples")).examples;
    } catch (error) {
      handleError(error, $("submit-problems"));
      return;
    }
    const select = $("example");
    select.replaceChildren(el("option", { value: "", text: "Choose an example…" }));
    for (const example of state.examples) select.append(el("option", { value: example.name, text: example.name }));
  }

  $("example").addEventListener("change", (event) => {
    const example = (state.examples || []).find((item) => item.name === event.target.value);
    if (example) $("plan").value = JSON.stringify(example.plan, null, 2);
    $("submit-problems").replaceChildren();
  });

  function showProblems(detail, problems) {
    const box = $("submit-problems");
    box.replaceChildren(el("p", { class: "error", text: detail }));
    if (problems && problems.length) {
      box.append(el(
        "ul",
        {},
        ...problems.map((problem) => el(
          "li",
          {},
          problem.path ? el("code", { text: problem.path }) : null,
          problem.path ? ": " : "",
          problem.message,
        )),
      ));
    }
  }

  $("submit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("submit-problems").replaceChildren();
    let body;
    try {
      body = JSON.parse($("plan").value);
    } catch (error) {
      showProblems("The plan is not valid JSON.", [{ path: "", message: error.message }]);
      return;
    }
    const button = $("submit");
    button.disabled = true;
    try {
      const accepted = await api("/api/execute", { method: "POST", body });
      location.hash = `#/executions/${encodeURIComponent(accepted.executionId)}`;
    } catch (error) {
      if (error instanceof Unauthorized) needKey("That API key was refused.");
      else if (error instanceof HttpError && error.body && Array.isArray(error.body.errors)) {
        showProblems(error.body.detail || "The plan was refused.", error.body.errors);
      } else showProblems(`Submission failed: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  });

  // ---------------------------------------------------------------- one execution

  function openExecution(id) {
    show("execution-view", `Execution ${id}`);
    state.view = new ExecutionView(id);
    state.view.open();
  }

  function closeExecution() {
    if (state.view) state.view.close();
    state.view = null;
  }

  class ExecutionView {
    constructor(id) {
      this.id = id;
      this.execution = null;
      this.jobs = new Map(); // job id -> job JSON
      this.cards = new Map(); // job id -> {node, fields}
      this.lastEventId = null;
      this.closed = false;
      this.aborter = new AbortController();
      this.blobUrls = [];
      this.layoutPending = false;
      this.ticker = setInterval(() => this.tick(), 1000);
      this.resizeObserver = new ResizeObserver(() => this.scheduleEdges());
    }

    open() {
      $("execution-id").textContent = this.id;
      setBadge($("execution-status"), "loading");
      $("execution-facts").replaceChildren();
      $("execution-error").textContent = "";
      $("levels").replaceChildren();
      $("edges").replaceChildren();
      this.setLive("connecting", "Connecting…");
      const link = $("temporal-link");
      const { temporalUiUrl, temporalNamespace } = state.config;
      link.href = `${temporalUiUrl}/namespaces/${encodeURIComponent(temporalNamespace)}`
        + `/workflows/${encodeURIComponent(`execution-${this.id}`)}`;
      const cancel = $("cancel");
      cancel.hidden = true;
      cancel.disabled = false;
      cancel.textContent = "Cancel execution";
      cancel.onclick = () => this.cancel();
      this.resizeObserver.observe($("levels"));
      this.start();
    }

    close() {
      this.closed = true;
      this.aborter.abort();
      clearInterval(this.ticker);
      this.resizeObserver.disconnect();
      for (const url of this.blobUrls) URL.revokeObjectURL(url);
      $("cancel").onclick = null;
    }

    get signal() {
      return this.aborter.signal;
    }

    async start() {
      // The status API gives the whole DAG at once; the stream then keeps it current.
      try {
        const status = await api(`/api/status/${encodeURIComponent(this.id)}`, { signal: this.signal });
        this.applyStatus(status);
      } catch (error) {
        if (this.closed) return;
        if (error instanceof HttpError && error.status === 404) {
          setBadge($("execution-status"), "unknown");
          this.setLive("ended", "");
          $("execution-error").textContent = `No execution ${this.id}.`;
        } else handleError(error, $("execution-error"));
        return;
      }
      // Streamed even when over: the stream's first events are the state it ended in.
      await this.stream();
    }

    applyStatus(status) {
      const { jobs, ...execution } = status;
      this.updateExecution(execution);
      for (const job of jobs) this.updateJob(job);
    }

    // -------------------------------------------------------------- live stream

    setLive(mode, text) {
      const live = $("live");
      live.dataset.mode = mode;
      live.textContent = text;
    }

    async stream() {
      const url = `/api/executions/${encodeURIComponent(this.id)}/events`;
      let delay = 500;
      while (!this.closed) {
        try {
          const headers = authHeaders({ Accept: "text/event-stream" });
          if (this.lastEventId !== null) headers["Last-Event-ID"] = this.lastEventId;
          const response = await fetch(url, { headers, signal: this.signal, cache: "no-store" });
          if (response.status === 401) { needKey("That API key was refused."); return; }
          if (response.status === 404 || response.status === 405) {
            // An API without the events endpoint: poll the status API instead.
            await this.poll();
            return;
          }
          if (response.status < 500 && this.lastEventId !== null && !response.ok) {
            // The id was refused (e.g. from an older server): a fresh stream starts with the
            // whole current state, so starting over loses nothing.
            console.warn(`resuming from ${this.lastEventId} was refused (HTTP ${response.status})`);
            this.lastEventId = null;
            continue;
          }
          if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
          this.setLive("sse", "● Live");
          delay = 500;
          if (await this.readEvents(response.body)) {
            this.setLive("ended", "Finished");
            return;
          }
        } catch (error) {
          if (this.closed) return;
          console.warn("event stream dropped:", error);
        }
        // Dropped before `end`: resume after the last event seen.
        this.setLive("reconnecting", "Reconnecting…");
        await sleep(delay, this.signal);
        delay = Math.min(delay * 2, 10000);
      }
    }

    // Reads `event:`, `id:` and `data:` fields (the text/event-stream format); true once the
    // `end` event arrived, false when the stream closed before it.
    async readEvents(body) {
      const reader = body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let type = "";
      let data = [];
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return false;
          buffer += value;
          for (;;) {
            const index = buffer.search(/[\r\n]/);
            if (index < 0) break;
            // A CR at the end of the buffer may be the first half of a CRLF: wait for more.
            if (buffer[index] === "\r" && index === buffer.length - 1) break;
            const line = buffer.slice(0, index);
            buffer = buffer.slice(index + (buffer.startsWith("\r\n", index) ? 2 : 1));
            if (line === "") {
              if (data.length && this.dispatch(type || "message", data.join("\n"))) return true;
              type = "";
              data = [];
              continue;
            }
            if (line.startsWith(":")) continue; // a comment, e.g. a keep-alive
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            let fieldValue = colon < 0 ? "" : line.slice(colon + 1);
            if (fieldValue.startsWith(" ")) fieldValue = fieldValue.slice(1);
            if (field === "event") type = fieldValue;
            else if (field === "data") data.push(fieldValue);
            else if (field === "id" && !fieldValue.includes("\0")) this.lastEventId = fieldValue;
          }
        }
      } finally {
        reader.cancel().catch(() => {});
      }
    }

    dispatch(type, text) {
      let payload;
      try {
        payload = JSON.parse(text);
      } catch {
        console.warn("unreadable event data:", text);
        return false;
      }
      if (type === "execution") this.updateExecution(payload);
      else if (type === "job") this.updateJob(payload);
      else if (type === "end") {
        this.updateExecution(payload);
        return true;
      }
      return false;
    }

    async poll() {
      this.setLive("polling", "Polling");
      while (!this.closed && RUNNING.has(this.execution.status)) {
        await sleep(1500, this.signal);
        if (this.closed) return;
        try {
          this.applyStatus(await api(`/api/status/${encodeURIComponent(this.id)}`, { signal: this.signal }));
        } catch (error) {
          if (this.closed) return;
          handleError(error, $("execution-error"));
          if (error instanceof Unauthorized) return;
        }
      }
      if (!this.closed) this.setLive("ended", "Finished");
    }

    async cancel() {
      const button = $("cancel");
      button.disabled = true;
      button.textContent = "Canceling…";
      try {
        await api(`/api/executions/${encodeURIComponent(this.id)}/cancel`, { method: "POST" });
      } catch (error) {
        if (error instanceof HttpError && error.status === 409) return; // already over
        button.disabled = false;
        button.textContent = "Cancel execution";
        handleError(error, $("execution-error"));
      }
    }

    // -------------------------------------------------------------- execution header

    updateExecution(execution) {
      this.execution = { ...(this.execution || {}), ...execution };
      const current = this.execution;
      setBadge($("execution-status"), current.status);
      $("execution-status").dataset.status = current.status;
      $("execution-error").textContent = current.error || "";
      $("cancel").hidden = !RUNNING.has(current.status);
      this.renderFacts();
    }

    renderFacts() {
      const current = this.execution;
      const jobs = [...this.jobs.values()];
      const done = jobs.filter((job) => job.status === "completed").length;
      const facts = [
        ["Created", timeNode(current.createdAt)],
        ["Completed", timeNode(current.completedAt)],
        ["Duration", el("span", { "data-duration": "execution", text: formatDuration(span(current.createdAt, current.completedAt)) })],
        ["Jobs", `${done} of ${jobs.length} completed`],
        ["Cost", formatCost(current.costUsd)],
      ];
      $("execution-facts").replaceChildren(...facts.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", {}, value)]));
    }

    tick() {
      const current = this.execution;
      if (!current) return;
      if (!current.completedAt) {
        const node = document.querySelector('[data-duration="execution"]');
        if (node) node.textContent = formatDuration(span(current.createdAt, null));
      }
      for (const [id, job] of this.jobs) {
        if (job.startedAt && !job.completedAt) {
          this.cards.get(id).fields.duration.textContent = formatDuration(span(job.startedAt, null));
        }
      }
    }

    // -------------------------------------------------------------- jobs and the DAG

    updateJob(job) {
      const isNew = !this.jobs.has(job.id);
      const before = this.jobs.get(job.id);
      this.jobs.set(job.id, job);
      if (isNew) {
        const card = this.buildCard(job);
        this.cards.set(job.id, card);
        this.resizeObserver.observe(card.node);
      }
      this.renderCard(job);
      if (isNew || String(before.dependsOn) !== String(job.dependsOn)) this.layout();
      else if (before.status !== job.status) this.scheduleEdges();
      if (this.execution) this.renderFacts();
    }

    buildCard(job) {
      const titleId = `job-title-${job.id}`;
      const fields = {
        status: el("span", { class: "badge" }),
        progress: el("progress", { max: "1", "aria-labelledby": titleId }),
        progressText: el("span", { class: "progress-text" }),
        facts: el("dl", { class: "facts" }),
        duration: el("span"),
        error: el("p", { class: "error", hidden: true }),
        outputs: el("div", { class: "outputs" }),
        outputKey: "",
      };
      const node = el(
        "article",
        { class: "job", "data-job-id": job.id, "aria-labelledby": titleId },
        el("header", {}, el("h3", { id: titleId, text: job.id }), fields.status),
        el("p", { class: "operation", text: job.operation }),
        el("div", { class: "progress-row" }, fields.progress, fields.progressText),
        fields.facts,
        fields.error,
        fields.outputs,
      );
      return { node, fields };
    }

    renderCard(job) {
      const { node, fields } = this.cards.get(job.id);
      node.dataset.status = job.status;
      setBadge(fields.status, job.status);
      const progress = job.status === "completed" ? 1 : job.progress;
      if (progress === null || progress === undefined) {
        if (JOB_DONE.has(job.status) || job.status === "pending") {
          fields.progress.value = 0;
          fields.progressText.textContent = "";
        } else {
          fields.progress.removeAttribute("value"); // indeterminate
          fields.progressText.textContent = "";
        }
      } else {
        fields.progress.value = progress;
        fields.progressText.textContent = `${Math.round(progress * 100)}%`;
      }
      fields.duration.textContent = formatDuration(span(job.startedAt, job.completedAt));
      const rows = [
        ["Provider", job.provider || "—"],
        ["Model", job.modelId ? el("code", { text: job.modelId }) : "—"],
        ["Waiting", job.waitingStrategy || "—"],
        ["Polls", String(job.pollAttempts ?? 0)],
        ["Started", timeNode(job.startedAt)],
        ["Completed", timeNode(job.completedAt)],
        ["Duration", fields.duration],
        ["Cost", formatCost(job.costUsd)],
      ];
      if (job.providerJobId) {
        rows.push(["Provider job", el("code", { text: `${job.providerJobId}${job.providerJobStatus ? ` (${job.providerJobStatus})` : ""}` })]);
      }
      if (job.nextPollAt && !JOB_DONE.has(job.status)) rows.push(["Next poll", timeNode(job.nextPollAt)]);
      fields.facts.replaceChildren(...rows.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", {}, value)]));
      fields.error.hidden = !job.error;
      fields.error.textContent = job.error || "";
      // Rebuilt only when the outputs change, so a playing video is left alone.
      const key = (job.outputs || []).map((output) => output.url).join("\n");
      if (key !== fields.outputKey) {
        fields.outputKey = key;
        fields.outputs.replaceChildren(...(job.outputs || []).map((output) => this.outputNode(job, output)));
        this.scheduleEdges();
      }
    }

    outputNode(job, output) {
      const details = [
        output.durationSeconds ? `${output.durationSeconds.toFixed(1)} s` : "",
        output.width && output.height ? `${output.width}×${output.height}` : "",
        output.fps ? `${Math.round(output.fps * 100) / 100} fps` : "",
        formatBytes(output.bytes),
      ].filter(Boolean).join(" · ");
      const link = el("a", { target: "_blank", rel: "noopener noreferrer", text: "Open" });
      let media = null;
      const type = output.contentType || "";
      if (type.startsWith("video/")) {
        media = el("video", { controls: true, preload: "metadata", "aria-label": `Video output of ${job.id}` });
      } else if (type.startsWith("image/")) {
        media = el("img", { alt: `Image output of ${job.id}`, decoding: "async" });
      }
      this.resolveMedia(output.url).then((src) => {
        if (!src) return;
        if (media) media.src = src;
        link.href = src;
      });
      return el(
        "figure",
        { class: "output", "data-content-type": type },
        media,
        el("figcaption", {}, el("span", { text: `${type}${details ? ` · ${details}` : ""} ` }), link),
      );
    }

    // Outputs in the local store are served by this API, which wants the key when it has keys;
    // a <video> or <img> cannot send it, so such files are fetched with it and shown from a blob.
    // Their URLs name the store's public base (API_BASE_URL), which may be another origin than
    // the one this page came from (a proxy, another API process): they are read from this one.
    async resolveMedia(url) {
      let safe = safeUrl(url);
      if (!safe || !state.apiKey) return safe;
      const filesBase = state.config.filesBaseUrl ? `${state.config.filesBaseUrl.replace(/\/+$/, "")}/` : null;
      if (filesBase && safe.startsWith(filesBase)) safe = new URL(`/files/${safe.slice(filesBase.length)}`, location.href).href;
      if (new URL(safe).origin !== location.origin) return safe;
      try {
        const response = await fetch(safe, { headers: authHeaders(), signal: this.signal });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const blobUrl = URL.createObjectURL(await response.blob());
        if (this.closed) URL.revokeObjectURL(blobUrl);
        else this.blobUrls.push(blobUrl);
        return this.closed ? null : blobUrl;
      } catch (error) {
        if (!this.closed) console.warn("could not load output", safe, error);
        return null;
      }
    }

    // A job's depth is 1 + the largest depth of the jobs it depends on; each depth is a column.
    layout() {
      const depths = new Map();
      const depthOf = (id, seen) => {
        if (depths.has(id)) return depths.get(id);
        const job = this.jobs.get(id);
        if (!job || seen.has(id)) return -1; // not known yet (or a cycle, which plans forbid)
        seen.add(id);
        const deps = job.dependsOn || [];
        const depth = deps.length ? 1 + Math.max(...deps.map((dep) => depthOf(dep, seen))) : 0;
        depths.set(id, Math.max(depth, 0));
        return depths.get(id);
      };
      for (const id of this.jobs.keys()) depthOf(id, new Set());
      const columns = [];
      for (const id of this.jobs.keys()) {
        const depth = depths.get(id);
        if (!columns[depth]) {
          columns[depth] = el("div", { class: "level", role: "list", "aria-label": `Depth ${depth + 1}` });
        }
        const item = el("div", { role: "listitem" }, this.cards.get(id).node);
        columns[depth].append(item);
      }
      $("levels").replaceChildren(...columns.filter(Boolean));
      this.scheduleEdges();
    }

    scheduleEdges() {
      if (this.layoutPending || this.closed) return;
      this.layoutPending = true;
      requestAnimationFrame(() => {
        this.layoutPending = false;
        if (!this.closed) this.drawEdges();
      });
    }

    drawEdges() {
      const svg = $("edges");
      const dag = $("dag");
      const origin = dag.getBoundingClientRect();
      svg.setAttribute("width", String(dag.scrollWidth));
      svg.setAttribute("height", String(dag.scrollHeight));
      const paths = [];
      for (const [id, job] of this.jobs) {
        const to = this.cards.get(id).node.getBoundingClientRect();
        for (const dep of job.dependsOn || []) {
          const card = this.cards.get(dep);
          if (!card) continue;
          const from = card.node.getBoundingClientRect();
          const x1 = from.right - origin.left + dag.scrollLeft;
          const y1 = from.top + Math.min(from.height / 2, 40) - origin.top + dag.scrollTop;
          const x2 = to.left - origin.left + dag.scrollLeft;
          const y2 = to.top + Math.min(to.height / 2, 40) - origin.top + dag.scrollTop;
          const bend = Math.max(24, (x2 - x1) / 2);
          const path = document.createElementNS(SVG_NS, "path");
          path.setAttribute("d", `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`);
          path.setAttribute("class", `edge edge-${this.jobs.get(dep).status}`);
          paths.push(path);
        }
      }
      svg.replaceChildren(...paths);
    }
  }

  window.addEventListener("hashchange", route);
  window.addEventListener("resize", () => state.view && state.view.scheduleEdges());
  route();
})();
