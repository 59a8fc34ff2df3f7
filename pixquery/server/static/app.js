// pixquery web page: plain JavaScript, no build step, no third-party code. Talks to the JSON API of the same server.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  // Results per request; a link may ask for another page size (?per_page=20), within what the server allows.
  const PAGE = Math.min(200, Math.max(10, Number(new URLSearchParams(location.search).get("per_page")) || 60));
  const TOKEN_KEY = "pixquery.token";

  const state = {
    token: localStorage.getItem(TOKEN_KEY) || "",
    upload: null, // a File dropped, pasted or picked
    uploadUrl: null, // its object URL, for the query chip
    like: null, // {id, thumb}: an indexed image used as the query ("more like this", "use as query")
    results: [],
    more: false,
    loading: false,
    seq: 0, // answers to superseded searches are dropped
    selected: -1,
    viewing: -1,
    maxK: 500,
    maxUpload: 20 * 1024 * 1024,
    statusTimer: null,
    lastQuery: null,
    cutoffRule: "auto", // what "Only confident matches" sends; a link may carry another rule (?cutoff=mad:3)
  };

  // Measurements the browser tests read: ms from a search response's arrival to its first thumbnail painted.
  const metrics = { renders: [], searches: 0 };
  window.__pixquery = metrics;

  // --- talking to the server ---------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.detail) || `request failed (${status})`);
      this.status = status;
      this.body = body;
    }
  }

  function setToken(token) {
    state.token = token;
    if (token) {
      localStorage.setItem(TOKEN_KEY, token);
      // <img> requests cannot carry headers; the server accepts the token from this cookie for images only.
      document.cookie = `pixquery_token=${encodeURIComponent(token)}; path=/; SameSite=Strict`;
    }
  }
  if (state.token) setToken(state.token);

  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    if (state.token) headers.set("Authorization", `Bearer ${state.token}`);
    const response = await fetch(path, { ...options, headers });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (response.status === 401) {
      askToken(Boolean(state.token));
      throw new ApiError(401, body);
    }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  function askToken(rejected) {
    const dialog = $("token-dialog");
    $("token-error").hidden = !rejected;
    if (!dialog.open) dialog.showModal();
    $("token").focus();
  }

  $("token-form").addEventListener("submit", () => {
    setToken($("token").value.trim());
    start();
  });

  // --- the query -----------------------------------------------------------------------------------------------
  function splitList(text) {
    return text.split(",").map((s) => s.trim()).filter(Boolean);
  }

  function readQuery() {
    const composed = Boolean(state.upload || state.like);
    const method = $("method").value;
    return {
      q: $("q").value.trim(),
      not: splitList($("not").value),
      folder: $("folder").value.trim(),
      date_from: $("date-from").value,
      date_to: $("date-to").value,
      sort: $("sort").value,
      cutoff: $("cutoff").checked ? state.cutoffRule : "",
      method,
      // The slider is the text's share of a composed query, which is what the "weighted" method's alpha means.
      alpha: composed && (method === "auto" || method === "weighted") ? $("alpha").value : "",
      like: state.like ? state.like.id : null,
      upload: state.upload,
    };
  }

  function hasQuery(query) {
    return Boolean(query.q || query.like || query.upload);
  }

  function params(query, offset) {
    const p = new URLSearchParams();
    if (query.q) p.set("q", query.q);
    for (const n of query.not) p.append("not", n);
    for (const key of ["folder", "date_from", "date_to", "cutoff"]) if (query[key]) p.set(key, query[key]);
    if (query.sort !== "score") p.set("sort", query.sort);
    if (query.q && (query.like || query.upload)) {
      p.set("method", query.method === "auto" ? "weighted" : query.method);
      if (query.alpha) p.set("alpha", query.alpha);
    } else if (query.method !== "auto") {
      p.set("method", query.method);
    }
    if (query.like && query.q) p.append("like", query.like);
    p.set("k", PAGE);
    if (offset) p.set("offset", offset);
    return p;
  }

  function request(query, offset) {
    const p = params(query, offset);
    if (query.upload) {
      const form = new FormData();
      form.append("image", query.upload, query.upload.name || "pasted.png");
      for (const [key, value] of p) form.append(key, value);
      return api("/api/search", { method: "POST", body: form });
    }
    if (query.like && !query.q) {
      p.delete("method");
      return api(`/api/similar/${query.like}?${p}`);
    }
    return api(`/api/search?${p}`);
  }

  function remember(query) {
    // The address bar mirrors the query, so reload, back and shared links work (uploads cannot be put in a URL).
    const p = new URLSearchParams();
    if (query.q) p.set("q", query.q);
    if (query.like && !query.upload) p.set("like", query.like);
    for (const n of query.not) p.append("not", n);
    for (const key of ["folder", "date_from", "date_to"]) if (query[key]) p.set(key, query[key]);
    if (query.sort !== "score") p.set("sort", query.sort);
    if (!query.cutoff) p.set("cutoff", "off");
    else if (query.cutoff !== "auto") p.set("cutoff", query.cutoff);
    if (PAGE !== 60) p.set("per_page", PAGE);
    const url = p.toString() ? `?${p}` : location.pathname;
    history.replaceState(null, "", url);
  }

  async function search(append = false) {
    const query = append ? state.lastQuery : readQuery();
    if (!query || !hasQuery(query)) {
      showHome();
      return;
    }
    if (query.upload && query.upload.size > state.maxUpload) {
      toast(`That image is larger than the ${Math.round(state.maxUpload / 1048576)} MB upload limit.`);
      return;
    }
    const seq = ++state.seq;
    const offset = append ? state.results.length : 0;
    state.loading = true;
    if (!append) {
      state.lastQuery = query;
      remember(query);
      $("meta").textContent = "Searching…";
    }
    try {
      const data = await request(query, offset);
      const arrived = performance.now();
      if (seq !== state.seq) return;
      render(data, query, append, arrived);
    } catch (error) {
      if (seq !== state.seq) return;
      if (error.status !== 401) {
        $("meta").textContent = "";
        toast(error.message);
      }
    } finally {
      if (seq === state.seq) {
        state.loading = false;
        requestAnimationFrame(fillScreen);
      }
    }
  }

  // --- results -------------------------------------------------------------------------------------------------
  function tile(result, index) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "tile";
    button.setAttribute("role", "option");
    button.dataset.index = String(index);
    button.dataset.id = String(result.id);
    button.title = result.name;
    const img = document.createElement("img");
    img.alt = result.name;
    img.decoding = "async";
    if (index >= 24) img.loading = "lazy"; // the first screenful loads at once, the rest as it scrolls in
    img.src = result.thumb;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = result.score.toFixed(2);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = result.name;
    button.append(img, score, name);
    return button;
  }

  function render(data, query, append, arrived) {
    const grid = $("grid");
    const start = append ? state.results.length : 0;
    if (!append) {
      state.results = [];
      state.selected = -1;
      grid.replaceChildren();
      window.scrollTo({ top: 0 });
    }
    state.results.push(...data.results);
    state.more = data.more && data.results.length > 0 && state.results.length + PAGE <= state.maxK;
    const fragment = document.createDocumentFragment();
    data.results.forEach((result, i) => fragment.append(tile(result, start + i)));
    grid.append(fragment);
    $("more").hidden = !state.more;
    metrics.searches += 1;
    if (!append) {
      describe(data, query);
      measureFirstPaint(grid.querySelector("img"), arrived);
    }
  }

  function measureFirstPaint(img, arrived) {
    if (!img) return;
    const done = () =>
      requestAnimationFrame(() =>
        requestAnimationFrame(() => metrics.renders.push({ ms: performance.now() - arrived, src: img.src })),
      );
    if (img.complete && img.naturalWidth) done();
    else img.addEventListener("load", done, { once: true });
  }

  function describe(data, query) {
    const meta = $("meta");
    const empty = $("empty");
    meta.replaceChildren();
    const what = query.q ? `“${query.q}”` : query.upload || query.like ? "this image" : "";
    if (data.results.length) {
      empty.hidden = true;
      const count = document.createElement("strong");
      count.textContent = `${data.results.length}${data.more ? "+" : ""}`;
      // With the cut-off these are judged matches; without it, only the closest images, whatever their score.
      const noun = query.cutoff ? ["match", "matches"] : ["result", "results"];
      meta.append(count, ` ${data.results.length === 1 ? noun[0] : noun[1]} for ${what}`);
      if (query.q && (query.upload || query.like)) meta.append(" + image");
      meta.append(` · ${Math.round(data.took_ms)} ms`);
      return;
    }
    empty.hidden = false;
    empty.replaceChildren();
    const title = document.createElement("h1");
    const text = document.createElement("p");
    const actions = document.createElement("div");
    actions.className = "row center";
    const filtered = Boolean(query.folder || query.date_from || query.date_to);
    if (query.cutoff) {
      title.textContent = "Nothing above the relevance cut-off.";
      const where = filtered ? " within these filters" : "";
      text.textContent = `No image${where} looks enough like ${what} to count as a match. The closest ones may still be worth a look.`;
      actions.append(button("show-all", "Show the closest images anyway", "btn", () => {
        $("cutoff").checked = false;
        $("filters-dot").hidden = !filtersActive();
        search();
      }));
    } else {
      title.textContent = "No images match these filters.";
      text.textContent = "Try another folder or date range, or clear the filters.";
    }
    if (filtered) actions.append(button("clear-filters", "Clear filters", "btn ghost", clearFilters));
    empty.append(title, text, actions);
  }

  function button(id, label, className, onClick) {
    const el = document.createElement("button");
    el.type = "button";
    el.id = id;
    el.className = className;
    el.textContent = label;
    el.addEventListener("click", onClick);
    return el;
  }

  function showHome() {
    state.seq++;
    state.results = [];
    state.selected = -1;
    $("grid").replaceChildren();
    $("meta").textContent = "";
    $("more").hidden = true;
    $("empty").hidden = false;
    history.replaceState(null, "", location.pathname);
  }

  // Infinite scroll: the "Show more" row doubles as the sentinel.
  const AHEAD = 600; // px below the fold at which the next page is asked for
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && state.more && !state.loading) search(true);
  }, { rootMargin: `${AHEAD}px` }).observe($("more"));

  function fillScreen() {
    // The observer fires only when the sentinel starts to intersect; if a page arrived while it already did
    // (a tall screen, a short page), ask for the next one here.
    if (state.more && !state.loading && $("more").getBoundingClientRect().top < innerHeight + AHEAD) search(true);
  }
  $("more-btn").addEventListener("click", () => search(true));

  // --- selection and keyboard ------------------------------------------------------------------------------------
  function columns() {
    return getComputedStyle($("grid")).gridTemplateColumns.split(" ").length || 1;
  }

  function select(index) {
    const tiles = $("grid").children;
    if (!tiles.length) return;
    index = Math.max(0, Math.min(tiles.length - 1, index));
    if (tiles[state.selected]) tiles[state.selected].classList.remove("selected");
    state.selected = index;
    tiles[index].classList.add("selected");
    tiles[index].setAttribute("aria-selected", "true");
    tiles[index].focus({ preventScroll: true });
    tiles[index].scrollIntoView({ block: "nearest" });
    if (index >= state.results.length - columns() * 2 && state.more && !state.loading) search(true);
  }

  $("grid").addEventListener("click", (event) => {
    const tileEl = event.target.closest(".tile");
    if (!tileEl) return;
    select(Number(tileEl.dataset.index));
    openViewer(Number(tileEl.dataset.index));
  });

  function typing(target) {
    return target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement;
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    if ($("viewer").open) {
      if (event.key === "ArrowRight") step(1);
      else if (event.key === "ArrowLeft") step(-1);
      else return;
      event.preventDefault();
      return;
    }
    if ($("token-dialog").open) return;
    const inInput = typing(event.target);
    if (event.key === "/" && !inInput) {
      event.preventDefault();
      $("q").focus();
      $("q").select();
      return;
    }
    if (event.key === "Escape") {
      if (!$("filters").hidden) toggleFilters(false);
      else if (inInput) event.target.blur();
      else if (state.selected >= 0) $("grid").children[state.selected]?.classList.remove("selected");
      return;
    }
    if (inInput) {
      if (event.key === "ArrowDown" && event.target === $("q") && state.results.length) {
        event.preventDefault();
        select(Math.max(state.selected, 0));
      }
      return;
    }
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() };
    if (event.key in moves && state.results.length) {
      event.preventDefault();
      if (state.selected < 0) select(0);
      else if (event.key === "ArrowUp" && state.selected < columns()) $("q").focus();
      else select(state.selected + moves[event.key]);
    } else if (event.key === "Enter" && state.selected >= 0) {
      event.preventDefault();
      openViewer(state.selected);
    }
  });

  // --- the viewer ----------------------------------------------------------------------------------------------
  const FIELDS = [
    ["Score", (r) => (r.score != null ? r.score.toFixed(3) : null)],
    ["Size", (r) => (r.width ? `${r.width} × ${r.height}` : null)],
    ["Format", (r) => r.format],
    ["File", (r) => (r.size ? bytes(r.size) : null)],
    ["Taken", (r) => (r.taken_at ? r.taken_at.replace("T", " ") : null)],
    ["Camera", (r) => [r.camera_make, r.camera_model].filter(Boolean).join(" ") || null],
    ["Location", (r) => (r.gps_lat != null ? `${r.gps_lat.toFixed(5)}, ${r.gps_lon.toFixed(5)}` : null)],
  ];

  function bytes(n) {
    return n > 1048576 ? `${(n / 1048576).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} KB`;
  }

  function fillInfo(record) {
    const list = $("info-list");
    list.replaceChildren();
    for (const [label, get] of FIELDS) {
      const value = get(record);
      if (value == null || value === "") continue;
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = value;
      list.append(dt, dd);
    }
  }

  async function openViewer(index) {
    const result = state.results[index];
    if (!result) return;
    state.viewing = index;
    const viewer = $("viewer");
    $("full").src = result.thumb; // sharp enough for a blink, replaced by the full image when it arrives
    const full = new Image();
    full.onload = () => state.viewing === index && ($("full").src = result.image);
    full.src = result.image;
    $("full").alt = result.name;
    $("info-name").textContent = result.name;
    $("info-folder").textContent = result.folder;
    $("download").href = `/api/image/${result.id}?download=true`;
    fillInfo(result);
    $("prev").hidden = index === 0;
    $("next").hidden = index >= state.results.length - 1;
    if (!viewer.open) viewer.showModal();
    const next = state.results[index + 1];
    if (next) new Image().src = next.image; // the next image is usually the one wanted next
    try {
      const item = await api(`/api/item/${result.id}`);
      if (state.viewing === index) fillInfo({ ...item, score: result.score });
    } catch {
      // the grid's data is enough to show
    }
  }

  function step(delta) {
    const index = state.viewing + delta;
    if (index < 0 || index >= state.results.length) return;
    select(index);
    openViewer(index);
  }

  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("close").addEventListener("click", () => $("viewer").close());
  $("viewer").addEventListener("close", () => {
    state.viewing = -1;
    $("grid").children[state.selected]?.focus({ preventScroll: true });
  });
  $("viewer").addEventListener("click", (event) => {
    if (event.target === $("viewer")) $("viewer").close(); // a click on the backdrop
  });

  function useAsQuery(result, keepText) {
    clearUpload();
    state.like = { id: result.id, thumb: result.thumb };
    if (!keepText) $("q").value = "";
    showRef(result.thumb);
    $("viewer").close();
  }

  $("similar").addEventListener("click", () => {
    useAsQuery(state.results[state.viewing], false);
    search();
  });
  $("refine").addEventListener("click", () => {
    useAsQuery(state.results[state.viewing], false);
    $("q").focus();
  });

  // --- query images: pick, drop, paste ------------------------------------------------------------------------------
  function showRef(src) {
    $("ref-img").src = src;
    $("ref").hidden = false;
    $("compose").hidden = false;
    $("q").placeholder = "Add words to change it — e.g. “at night”, “in red”";
  }

  function clearUpload() {
    if (state.uploadUrl) URL.revokeObjectURL(state.uploadUrl);
    state.upload = null;
    state.uploadUrl = null;
  }

  function clearRef() {
    clearUpload();
    state.like = null;
    $("ref").hidden = true;
    $("compose").hidden = true;
    $("q").placeholder = "Search your photos — try “a cat on a chair”";
  }

  function takeImage(file) {
    if (!file || !file.type.startsWith("image/")) {
      toast("That is not an image file.");
      return;
    }
    clearRef();
    state.upload = file;
    state.uploadUrl = URL.createObjectURL(file);
    showRef(state.uploadUrl);
    search();
  }

  $("file").addEventListener("change", (event) => {
    takeImage(event.target.files[0]);
    event.target.value = "";
  });
  $("ref-clear").addEventListener("click", () => {
    clearRef();
    $("q").focus();
    search();
  });

  let dragDepth = 0;
  const dragsFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
  window.addEventListener("dragenter", (event) => {
    if (!dragsFiles(event)) return;
    dragDepth++;
    $("drop").hidden = false;
  });
  window.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) $("drop").hidden = true;
  });
  window.addEventListener("dragover", (event) => {
    if (dragsFiles(event)) event.preventDefault();
  });
  window.addEventListener("drop", (event) => {
    if (!dragsFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    $("drop").hidden = true;
    takeImage(event.dataTransfer.files[0]);
  });
  window.addEventListener("paste", (event) => {
    const item = Array.from(event.clipboardData?.items || []).find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (!item) return; // pasted text goes where it was pasted
    event.preventDefault();
    takeImage(item.getAsFile());
  });

  // --- form, filters, composition ------------------------------------------------------------------------------------
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });

  function updateAlpha() {
    $("alpha-out").value = `${Math.round($("alpha").value * 100)}% text`;
  }
  $("alpha").addEventListener("input", updateAlpha);
  $("alpha").addEventListener("change", () => $("q").value.trim() && search());
  updateAlpha();

  function toggleFilters(open) {
    const panel = $("filters");
    const show = open ?? panel.hidden;
    panel.hidden = !show;
    $("filters-toggle").setAttribute("aria-expanded", String(show));
  }
  $("filters-toggle").addEventListener("click", () => toggleFilters());

  const FILTER_INPUTS = ["not", "folder", "date-from", "date-to", "sort", "method", "cutoff"];
  function filtersActive() {
    return Boolean(
      $("not").value.trim() || $("folder").value.trim() || $("date-from").value || $("date-to").value ||
        $("sort").value !== "score" || $("method").value !== "auto" || !$("cutoff").checked,
    );
  }
  for (const id of FILTER_INPUTS) {
    $(id).addEventListener("change", () => {
      $("filters-dot").hidden = !filtersActive();
      if (state.lastQuery) search();
    });
  }
  function clearFilters() {
    for (const id of ["not", "folder", "date-from", "date-to"]) $(id).value = "";
    $("sort").value = "score";
    $("method").value = "auto";
    $("cutoff").checked = true;
    state.cutoffRule = "auto";
    $("filters-dot").hidden = true;
    if (state.lastQuery) search();
  }
  $("filters-clear").addEventListener("click", clearFilters);

  // --- status and re-indexing ------------------------------------------------------------------------------------------
  function number(n) {
    return Number(n).toLocaleString();
  }

  function showStatus(data) {
    const index = data.index;
    const job = data.reindex;
    const led = $("status-led");
    const running = job.running;
    led.className = `led ${running ? "busy" : job.state === "failed" ? "bad" : "ok"}`;
    $("status-text").textContent = running
      ? `Indexing · ${number(index.indexed)} / ${number(index.files)}`
      : `${number(index.indexed)} images · ${index.model}`;
    const rows = [
      ["Images", number(index.indexed)],
      ["Waiting", number(index.pending)],
      ["Unreadable", number(index.errors + index.skipped)],
      ["Model", index.model],
      ["On disk", bytes(index.size_bytes)],
      ["Last indexed", index.last_indexed_at ? new Date(index.last_indexed_at * 1000).toLocaleString() : "never"],
    ];
    const list = $("status-list");
    list.replaceChildren();
    for (const [label, value] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = value;
      list.append(dt, dd);
    }
    const texts = {
      running: "Re-indexing: new and changed photos appear in results as they are embedded.",
      stopping: "Stopping after the current batch…",
      done: job.report ? `Last re-index: ${job.report.embedded} embedded, ${job.report.deleted} removed.` : "Re-index finished.",
      failed: `Re-index failed: ${job.error || "unknown error"}`,
      stopped: "Re-index stopped; run it again to resume.",
      idle: "Re-indexing looks for new, changed, moved and deleted photos in the indexed folders.",
    };
    $("reindex-text").textContent = texts[job.state] || "";
    $("reindex-start").hidden = running;
    $("reindex-stop").hidden = !running;
    clearTimeout(state.statusTimer);
    state.statusTimer = setTimeout(refreshStatus, running ? 1500 : 30000);
  }

  async function refreshStatus() {
    try {
      showStatus(await api("/api/status"));
    } catch (error) {
      $("status-led").className = "led bad";
      $("status-text").textContent = error.status === 401 ? "token needed" : "offline";
    }
  }

  $("status-pill").addEventListener("click", () => {
    const pop = $("status-pop");
    pop.hidden = !pop.hidden;
    $("status-pill").setAttribute("aria-expanded", String(!pop.hidden));
  });
  document.addEventListener("click", (event) => {
    if (!$("status").contains(event.target)) $("status-pop").hidden = true;
  });
  $("reindex-start").addEventListener("click", async () => {
    try {
      await api("/api/reindex", { method: "POST" });
    } catch (error) {
      toast(error.message);
    }
    refreshStatus();
  });
  $("reindex-stop").addEventListener("click", async () => {
    try {
      await api("/api/reindex", { method: "DELETE" });
    } catch (error) {
      toast(error.message);
    }
    refreshStatus();
  });

  let toastTimer = null;
  function toast(message) {
    const el = $("toast");
    el.textContent = message;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (el.hidden = true), 5000);
  }

  // --- start -------------------------------------------------------------------------------------------------------
  async function start() {
    let status;
    try {
      status = await api("/api/status");
    } catch {
      $("status-led").className = "led bad";
      $("status-text").textContent = "token needed";
      return;
    }
    state.maxK = status.limits.max_k;
    state.maxUpload = status.limits.max_upload_bytes;
    const method = $("method");
    method.replaceChildren(...status.methods.map((name) => new Option(name, name)));
    showStatus(status);
    api("/api/folders")
      .then((folders) => $("folders").replaceChildren(...folders.map((f) => new Option(`${f.count} images`, f.folder))))
      .catch(() => {});
    restore();
  }

  function restore() {
    const p = new URLSearchParams(location.search);
    $("q").value = p.get("q") || "";
    $("not").value = p.getAll("not").join(", ");
    $("folder").value = p.get("folder") || "";
    $("date-from").value = p.get("date_from") || "";
    $("date-to").value = p.get("date_to") || "";
    $("sort").value = p.get("sort") || "score";
    const cutoff = p.get("cutoff");
    $("cutoff").checked = cutoff !== "off";
    state.cutoffRule = cutoff && cutoff !== "off" ? cutoff : "auto";
    $("filters-dot").hidden = !filtersActive();
    const like = Number(p.get("like"));
    if (like > 0) {
      state.like = { id: like, thumb: `/api/thumb/${like}` };
      showRef(state.like.thumb);
    }
    if (hasQuery(readQuery())) search();
    else $("q").focus();
  }

  start();
})();
