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
    view: "photos", // photos, tags, clusters, duplicates
    scope: null, // what the photos view browses without a query: null (everything), {kind: "tag", tag}, {kind: "cluster", id, name}
    combine: false, // whether a query image is combined with the words in the search box (asked for explicitly)
    setAside: "", // the words a picked image replaced, offered back by "Combine with text"
    showScores: localStorage.getItem("pixquery.scores") === "1",
    viewList: [], // the records the viewer steps through: the grid's, or one duplicate group's
    indexed: 0,
    folders: [],
    matches: null, // with the cut-off: how many images the search judged matches
    polls: {}, // view -> timer of the organising run it waits for
    dirty: false, // a filter changed while another view was shown
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
    const composed = Boolean(state.upload || state.like) && state.combine;
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
      scope: state.scope,
      order: $("order").value,
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

  function browseParams(query, offset) {
    const p = new URLSearchParams();
    for (const key of ["folder", "date_from", "date_to"]) if (query[key]) p.set(key, query[key]);
    if (query.scope && query.scope.kind === "tag") p.set("tag", query.scope.tag);
    p.set("sort", query.order);
    p.set("k", PAGE);
    if (offset) p.set("offset", offset);
    return p;
  }

  function request(query, offset) {
    if (!hasQuery(query)) {
      // No query: browse the collection (or a cluster's members), newest first.
      if (query.scope && query.scope.kind === "cluster") {
        return api(`/api/clusters/${query.scope.id}?k=${PAGE}${offset ? `&offset=${offset}` : ""}`);
      }
      return api(`/api/browse?${browseParams(query, offset)}`);
    }
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
    // The address bar mirrors what is shown, so reload, back and shared links work (uploads cannot be in a URL).
    const p = new URLSearchParams();
    if (state.view !== "photos") p.set("view", state.view);
    if (query.q) p.set("q", query.q);
    if (query.like && !query.upload) p.set("like", query.like);
    for (const n of query.not) p.append("not", n);
    for (const key of ["folder", "date_from", "date_to"]) if (query[key]) p.set(key, query[key]);
    if (query.sort !== "score") p.set("sort", query.sort);
    if (query.cutoff) p.set("cutoff", query.cutoff); // off by default: the closest images, ranked
    if (query.scope && query.scope.kind === "tag") p.set("tag", query.scope.tag);
    if (query.scope && query.scope.kind === "cluster") p.set("cluster", query.scope.id);
    if (query.order !== "date") p.set("order", query.order);
    if (PAGE !== 60) p.set("per_page", PAGE);
    const url = p.toString() ? `?${p}` : location.pathname;
    history.replaceState(null, "", url);
  }

  // What the photos view shows: search results for a query, else the collection (or a tag, a cluster) browsed.
  async function load(append = false) {
    const query = append ? state.lastQuery : readQuery();
    if (!query) return;
    state.dirty = false;
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
      showBrowsebar(query);
      $("meta").textContent = hasQuery(query) ? "Searching…" : "Loading…";
    }
    try {
      const data = await request(query, offset);
      const arrived = performance.now();
      if (seq !== state.seq) return;
      render(data, query, append, arrived);
    } catch (error) {
      if (seq !== state.seq) return;
      if (error.status === 409 && query.scope && query.scope.kind === "cluster") {
        // A cluster from a link, before any clustering was made here: make one.
        setScope(null);
        showView("clusters");
        return;
      }
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
  function taken(record) {
    return record.taken_at ? record.taken_at.slice(0, 10) : "";
  }

  function tile(result, index, query) {
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
    button.append(img);
    // A raw similarity means little on its own (it differs between models and queries): tiles show it only when
    // asked to. Browsing by date shows each photo's date instead.
    let badge = "";
    if (result.score != null && state.showScores) badge = result.score.toFixed(2);
    else if (result.score == null && query.order === "date") badge = taken(result);
    if (badge) {
      const el = document.createElement("span");
      el.className = "badge";
      el.textContent = badge;
      button.append(el);
    }
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = result.name;
    button.append(name);
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
      state.matches = data.matches ?? null;
    }
    state.results.push(...data.results);
    const paged = hasQuery(query) ? state.results.length + PAGE <= state.maxK : true; // search pages stop at max_k
    state.more = data.more && data.results.length > 0 && paged;
    const fragment = document.createDocumentFragment();
    data.results.forEach((result, i) => fragment.append(tile(result, start + i, query)));
    grid.append(fragment);
    $("more").hidden = !state.more;
    metrics.searches += 1;
    if (!append) {
      if (data.cluster && query.scope && query.scope.kind === "cluster") {
        query.scope.name = data.cluster.name;
        query.scope.size = data.cluster.size;
      }
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

  function plural(n, one, many) {
    return `${number(n)} ${n === 1 ? one : many}`;
  }

  function filtered(query) {
    return Boolean(query.folder || query.date_from || query.date_to);
  }

  function describe(data, query) {
    const meta = $("meta");
    meta.replaceChildren();
    $("keys").hidden = hasQuery(query) || Boolean(query.scope) || filtered(query);
    if (!hasQuery(query)) {
      describeBrowse(data, query);
      return;
    }
    const what = query.q ? `“${query.q}”` : "this image";
    if (data.results.length) {
      $("empty").hidden = true;
      const count = document.createElement("strong");
      if (query.cutoff) {
        // With the cut-off the results are the matches: the engine judged each one relevant, and says how many.
        const n = data.matches ?? data.results.length;
        count.textContent = plural(n, "match", "matches");
        meta.append(count, ` for ${what}`);
      } else {
        // Without it, only the closest images, whatever their score: not all of them need to be relevant.
        count.textContent = `${data.results.length}${data.more ? "+" : ""} closest images`;
        meta.append(count, ` to ${what} · no relevance cut-off, so not all of them need to match`);
      }
      if (query.q && (query.upload || query.like)) meta.append(" + image");
      meta.append(` · ${Math.round(data.took_ms)} ms`);
      return;
    }
    const actions = emptyState();
    if (query.cutoff) {
      const where = filtered(query) ? " within these filters" : "";
      emptyText("Nothing above the relevance cut-off.",
        `No image${where} looks enough like ${what} to count as a match. The closest ones may still be worth a look.`);
      actions.append(button("show-all", "Show the closest images anyway", "btn", () => {
        $("cutoff").checked = false;
        $("filters-dot").hidden = !filtersActive();
        load();
      }));
    } else {
      emptyText("No images match these filters.", "Try another folder or date range, or clear the filters.");
    }
    if (filtered(query)) actions.append(button("clear-filters", "Clear filters", "btn ghost", clearFilters));
  }

  function describeBrowse(data, query) {
    const meta = $("meta");
    const scope = query.scope;
    const title = document.createElement("strong");
    if (scope && scope.kind === "tag") title.textContent = `Tag: ${scope.tag}`;
    else if (scope && scope.kind === "cluster") title.textContent = `Cluster: ${scope.name || scope.id}`;
    else if (query.folder) title.textContent = `Folder: ${shortFolder(query.folder)}`;
    else title.textContent = "All photos";
    meta.append(title);
    if (scope) {
      const clear = button("scope-clear", "×", "chip-x", () => {
        setScope(null);
        load();
      });
      clear.setAttribute("aria-label", `Show all photos, not only this ${scope.kind}`);
      meta.append(clear);
    }
    if (scope && scope.kind === "cluster") {
      meta.append(" · ", button("back-clusters", "All clusters", "link", () => showView("clusters")));
    }
    if (!scope && !filtered(query) && state.indexed) meta.append(` · ${plural(state.indexed, "image", "images")}`);
    if (scope && scope.kind === "cluster") meta.append(scope.size ? ` · ${plural(scope.size, "image", "images")}` : "");
    else meta.append(query.order === "date" ? " · newest taken first" : " · most recently added first");
    if (!scope) meta.append(" · describe what you are looking for above, or drop an image to find ones like it");
    if (data.results.length) {
      $("empty").hidden = true;
      return;
    }
    const actions = emptyState();
    if (filtered(query) || scope) {
      emptyText("No images here.", "Nothing indexed matches this folder, date range or selection.");
      if (filtered(query)) actions.append(button("clear-filters", "Clear filters", "btn ghost", clearFilters));
    } else {
      emptyText("Nothing is indexed yet.",
        "Index a folder of photos (pixquery index FOLDER), or start a re-index from the status menu above.");
    }
  }

  function emptyState() {
    const empty = $("empty");
    empty.hidden = false;
    empty.replaceChildren();
    const actions = document.createElement("div");
    actions.className = "row center";
    empty.append(actions);
    return actions;
  }

  function emptyText(heading, body) {
    const title = document.createElement("h1");
    title.textContent = heading;
    const text = document.createElement("p");
    text.textContent = body;
    $("empty").prepend(title, text);
  }

  function button(id, label, className, onClick) {
    const el = document.createElement("button");
    el.type = "button";
    if (id) el.id = id;
    el.className = className;
    el.textContent = label;
    el.addEventListener("click", onClick);
    return el;
  }

  function setScope(scope) {
    state.scope = scope;
  }

  // --- browsing by folder ----------------------------------------------------------------------------------------
  const FOLDER_CHIPS = 12;
  let commonRoot = "";

  function shortFolder(folder) {
    // Folders are shown below the folder all of them share (the indexed root), which tells the user nothing.
    const short = commonRoot && folder.startsWith(commonRoot) ? folder.slice(commonRoot.length) : folder;
    return short.replace(/^\/+/, "") || folder.split("/").filter(Boolean).pop() || folder;
  }

  function setFolders(folders) {
    state.folders = folders;
    const paths = folders.map((f) => f.folder);
    commonRoot = paths.length > 1 ? paths.reduce(sharedPrefix) : paths.length ? paths[0].replace(/[^/]*$/, "") : "";
    showBrowsebar(state.lastQuery);
  }

  function sharedPrefix(a, b) {
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    const cut = a.slice(0, i);
    // Whole folder names only: "/photos/cats" and "/photos/cars" share "/photos/", not "/photos/ca".
    if ((i === a.length && b[i] === "/") || (i === b.length && a[i] === "/")) return `${cut}/`;
    return cut.slice(0, cut.lastIndexOf("/") + 1);
  }

  function showBrowsebar(query) {
    const bar = $("browsebar");
    bar.hidden = !query || hasQuery(query) || Boolean(query.scope && query.scope.kind === "cluster");
    if (bar.hidden) return;
    const chips = $("folder-chips");
    const current = $("folder").value.trim();
    const shown = state.folders.slice(0, FOLDER_CHIPS);
    if (current && !shown.some((f) => f.folder === current)) shown.unshift({ folder: current, count: null });
    const all = folderChip("All folders", "", current === "", null);
    chips.replaceChildren(all, ...shown.map((f) => folderChip(shortFolder(f.folder), f.folder, f.folder === current, f.count)));
    chips.hidden = state.folders.length < 2 && !current;
  }

  function folderChip(label, folder, pressed, count) {
    const chip = button(null, label, "chip", () => {
      $("folder").value = folder;
      $("filters-dot").hidden = !filtersActive();
      load();
    });
    chip.dataset.folder = folder;
    chip.title = folder || "every indexed folder";
    chip.setAttribute("aria-pressed", String(pressed));
    if (count != null) {
      const n = document.createElement("span");
      n.className = "count";
      n.textContent = number(count);
      chip.append(n);
    }
    return chip;
  }

  $("order").addEventListener("change", () => load());

  // Infinite scroll: the "Show more" row doubles as the sentinel.
  const AHEAD = 600; // px below the fold at which the next page is asked for
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && state.more && !state.loading) load(true);
  }, { rootMargin: `${AHEAD}px` }).observe($("more"));

  function fillScreen() {
    // The observer fires only when the sentinel starts to intersect; if a page arrived while it already did
    // (a tall screen, a short page), ask for the next one here.
    if (state.more && !state.loading && $("more").getBoundingClientRect().top < innerHeight + AHEAD) load(true);
  }
  $("more-btn").addEventListener("click", () => load(true));

  // --- selection and keyboard ------------------------------------------------------------------------------------
  function columns() {
    return getComputedStyle($("grid")).gridTemplateColumns.split(" ").length || 1;
  }

  function select(index) {
    const tiles = $("grid").children;
    if (!tiles.length) return;
    index = Math.max(0, Math.min(tiles.length - 1, index));
    if (tiles[state.selected]) {
      tiles[state.selected].classList.remove("selected");
      tiles[state.selected].setAttribute("aria-selected", "false");
    }
    state.selected = index;
    tiles[index].classList.add("selected");
    tiles[index].setAttribute("aria-selected", "true");
    tiles[index].focus({ preventScroll: true });
    tiles[index].scrollIntoView({ block: "nearest" });
    if (index >= state.results.length - columns() * 2 && state.more && !state.loading) load(true);
  }

  $("grid").addEventListener("click", (event) => {
    const tileEl = event.target.closest(".tile");
    if (!tileEl) return;
    select(Number(tileEl.dataset.index));
    openViewer(Number(tileEl.dataset.index), state.results);
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
    if (event.target instanceof Element && event.target.getAttribute("role") === "tab") {
      // The view tabs: arrows move between them (and show the view), as in any tab list.
      const order = TABS.indexOf(event.target.dataset.view);
      const moves = { ArrowRight: 1, ArrowLeft: -1, Home: -order, End: TABS.length - 1 - order };
      if (event.key in moves) {
        event.preventDefault();
        const view = TABS[(order + moves[event.key] + TABS.length) % TABS.length];
        showView(view);
        $(`tab-${view}`).focus();
        return;
      }
    }
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
      if (event.key === "ArrowDown" && event.target === $("q") && state.results.length && state.view === "photos") {
        event.preventDefault();
        select(Math.max(state.selected, 0));
      }
      return;
    }
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() };
    if (event.key in moves && state.results.length && state.view === "photos") {
      event.preventDefault();
      if (state.selected < 0) select(0);
      else if (event.key === "ArrowUp" && state.selected < columns()) $("q").focus();
      else select(state.selected + moves[event.key]);
    } else if (event.key === "Enter" && state.selected >= 0 && state.view === "photos" && event.target.closest?.(".tile")) {
      event.preventDefault();
      openViewer(state.selected, state.results);
    }
  });

  // --- the viewer ----------------------------------------------------------------------------------------------
  // Where a search result stands, in words: its rank among the matches (with the cut-off) or among the closest
  // images (without). The raw similarity only when asked for: on its own it tells a user nothing.
  function rank(record) {
    const index = state.viewList.indexOf(record);
    const query = state.lastQuery;
    if (record.score == null || index < 0 || state.viewList !== state.results || !query || !hasQuery(query)) return null;
    if (query.cutoff && state.matches != null) return `${number(index + 1)} of ${plural(state.matches, "match", "matches")}`;
    return `#${number(index + 1)} by similarity (no cut-off)`;
  }

  const FIELDS = [
    ["Rank", (r) => rank(r)],
    ["Score", (r) => (r.score != null && state.showScores ? r.score.toFixed(3) : null)],
    ["Size", (r) => (r.width ? `${r.width} × ${r.height}` : null)],
    ["Format", (r) => r.format],
    ["File", (r) => (r.size ? bytes(r.size) : r.bytes ? bytes(r.bytes) : null)],
    ["Taken", (r) => (r.taken_at ? r.taken_at.replace("T", " ") : null)],
    ["Camera", (r) => [r.camera_make, r.camera_model].filter(Boolean).join(" ") || null],
    ["Location", (r) => (r.gps_lat != null ? `${r.gps_lat.toFixed(5)}, ${r.gps_lon.toFixed(5)}` : null)],
  ];

  function bytes(n) {
    return n > 1048576 ? `${(n / 1048576).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} KB`;
  }

  function fillInfo(record, shown) {
    const list = $("info-list");
    list.replaceChildren();
    for (const [label, get] of FIELDS) {
      const value = get(label === "Rank" ? shown : record);
      if (value == null || value === "") continue;
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = value;
      list.append(dt, dd);
    }
  }

  // `list`: the records to step through (the grid's results, or one duplicate group's members).
  async function openViewer(index, list = state.viewList) {
    const result = list[index];
    if (!result) return;
    state.viewList = list;
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
    fillInfo(result, result);
    $("prev").hidden = index === 0;
    $("next").hidden = index >= list.length - 1;
    if (!viewer.open) viewer.showModal();
    const next = list[index + 1];
    if (next) new Image().src = next.image; // the next image is usually the one wanted next
    try {
      const item = await api(`/api/item/${result.id}`);
      if (state.viewing === index && state.viewList === list) fillInfo({ ...item, score: result.score }, result);
    } catch {
      // the list's data is enough to show
    }
  }

  function step(delta) {
    const index = state.viewing + delta;
    if (index < 0 || index >= state.viewList.length) return;
    if (state.viewList === state.results) select(index);
    openViewer(index, state.viewList);
  }

  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("close").addEventListener("click", () => $("viewer").close());
  $("viewer").addEventListener("close", () => {
    state.viewing = -1;
    if (state.viewList === state.results) $("grid").children[state.selected]?.focus({ preventScroll: true });
  });
  $("viewer").addEventListener("click", (event) => {
    if (event.target === $("viewer")) $("viewer").close(); // a click on the backdrop
  });

  // An indexed image as the query: a new query (the words in the box are set aside) unless `combine`.
  function useAsQuery(result, combine) {
    clearRef();
    state.like = { id: result.id, thumb: result.thumb };
    setScope(null);
    if (!combine) setAside();
    showRef(result.thumb);
    setCombine(combine);
    $("viewer").close();
    showView("photos", false);
  }

  $("similar").addEventListener("click", () => {
    useAsQuery(state.viewList[state.viewing], false);
    load();
  });
  $("refine").addEventListener("click", () => {
    // "Refine with words": the user asked to combine this image with what they type next.
    useAsQuery(state.viewList[state.viewing], true);
    $("q").focus();
  });

  // --- query images: pick, drop, paste ------------------------------------------------------------------------------
  const PLACEHOLDER = "Search your photos — try “a cat on a chair”";

  function showRef(src) {
    $("ref-img").src = src;
    $("ref").hidden = false;
    $("compose").hidden = false;
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
    setCombine(false);
  }

  // The words in the box, moved out of the way of a new image query (and offered back by "Combine with ...").
  function setAside() {
    const words = $("q").value.trim();
    if (words) state.setAside = words;
    $("q").value = "";
  }

  function setCombine(on) {
    const hasImage = Boolean(state.upload || state.like);
    state.combine = Boolean(on) && hasImage;
    $("combine").checked = state.combine;
    $("balance").hidden = !state.combine;
    $("combine-label").textContent = state.setAside && !state.combine ? `Combine with “${state.setAside}”` : "Combine with text";
    $("compose-what").textContent = state.combine ? "Image and words together:" : "Searching by this image alone.";
    if (!hasImage) $("q").placeholder = PLACEHOLDER;
    else if (state.combine) $("q").placeholder = "Add words to change it — e.g. “at night”, “in red”";
    else $("q").placeholder = "Type to start a new search, or tick “Combine with text”";
  }

  $("combine").addEventListener("change", () => {
    if ($("combine").checked) {
      if (!$("q").value.trim() && state.setAside) $("q").value = state.setAside;
      setCombine(true);
      if ($("q").value.trim()) load();
      else $("q").focus();
    } else {
      setAside();
      setCombine(false);
      load();
    }
  });

  function takeImage(file) {
    if (!file || !file.type.startsWith("image/")) {
      toast("That is not an image file.");
      return;
    }
    // A picked, dropped or pasted image starts a new query, unless the user asked to combine it with words.
    const combine = state.combine;
    clearRef();
    state.upload = file;
    state.uploadUrl = URL.createObjectURL(file);
    setScope(null);
    if (!combine) setAside();
    showRef(state.uploadUrl);
    setCombine(combine);
    showView("photos", false);
    load();
  }

  $("file").addEventListener("change", (event) => {
    takeImage(event.target.files[0]);
    event.target.value = "";
  });
  $("ref-clear").addEventListener("click", () => {
    clearRef();
    $("q").focus();
    load();
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
    // Words typed beside a query image that was not to be combined start a new, text-only search.
    if ((state.upload || state.like) && !state.combine && $("q").value.trim()) clearRef();
    if ($("q").value.trim() || state.upload || state.like) setScope(null); // a search covers the whole collection
    if ($("q").value.trim()) state.setAside = "";
    setCombine(state.combine);
    showView("photos", false);
    load();
  });

  function updateAlpha() {
    $("alpha-out").value = `${Math.round($("alpha").value * 100)}% text`;
  }
  $("alpha").addEventListener("input", updateAlpha);
  $("alpha").addEventListener("change", () => $("q").value.trim() && load());
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
        $("sort").value !== "score" || $("method").value !== "auto" || $("cutoff").checked,
    );
  }
  for (const id of FILTER_INPUTS) {
    $(id).addEventListener("change", () => {
      $("filters-dot").hidden = !filtersActive();
      if (state.view === "photos") load();
      else state.dirty = true;
    });
  }
  $("scores").addEventListener("change", () => {
    state.showScores = $("scores").checked;
    localStorage.setItem("pixquery.scores", state.showScores ? "1" : "0");
    if (state.view === "photos" && state.lastQuery && hasQuery(state.lastQuery)) load();
  });
  function clearFilters() {
    for (const id of ["not", "folder", "date-from", "date-to"]) $(id).value = "";
    $("sort").value = "score";
    $("method").value = "auto";
    $("cutoff").checked = false;
    state.cutoffRule = "auto";
    $("filters-dot").hidden = true;
    if (state.view === "photos") load();
    else state.dirty = true;
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
    state.indexed = index.indexed;
    // Files that are no images at all (a README, a .txt) are not a problem to fix; images that cannot be read are.
    const notImages = index.not_images ?? 0;
    const unreadable = index.unreadable ?? index.errors + index.skipped;
    const rows = [
      ["Images", number(index.indexed), "indexed and searchable"],
      ["Waiting", number(index.pending), "found, not embedded yet"],
      ["Not images", number(notImages), "files in the folders that are not images (a README, a .txt): skipped"],
      ["Unreadable", number(unreadable), "images that could not be read: corrupt, truncated, too large or a broken link"],
      ["Model", index.model],
      ["On disk", bytes(index.size_bytes)],
      ["Last indexed", index.last_indexed_at ? new Date(index.last_indexed_at * 1000).toLocaleString() : "never"],
    ];
    const list = $("status-list");
    list.replaceChildren();
    for (const [label, value, hint] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = value;
      if (hint) dt.title = dd.title = hint;
      dt.dataset.row = dd.dataset.row = label.toLowerCase().replace(/ /g, "-");
      list.append(dt, dd);
    }
    const note = $("status-note");
    note.hidden = !notImages && !unreadable;
    note.textContent = unreadable
      ? "Unreadable images are left out of searches; `pixquery info` lists them. Files that are not images are skipped."
      : "Files that are not images (notes, documents) are skipped; nothing to fix.";
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

  // --- views: photos, tags, clusters, duplicates ---------------------------------------------------------------------
  const TABS = ["photos", "tags", "clusters", "duplicates"];

  function showView(view, reload = true) {
    if (!TABS.includes(view)) view = "photos";
    const changed = state.view !== view;
    state.view = view;
    for (const name of TABS) {
      const tab = $(`tab-${name}`);
      tab.setAttribute("aria-selected", String(name === view));
      tab.tabIndex = name === view ? 0 : -1;
      $(`panel-${name}`).hidden = name !== view;
    }
    for (const name of Object.keys(state.polls)) if (name !== view) stopPolling(name);
    if (view === "photos") {
      // Coming back shows what was there, unless a filter changed meanwhile.
      if (reload && (state.dirty || !state.lastQuery)) load();
      else if (changed && state.lastQuery) remember(state.lastQuery);
      return;
    }
    remember(readQuery());
    if (view === "tags") loadTags();
    else if (view === "clusters") follow("clusters");
    else if (view === "duplicates") follow("duplicates");
  }

  for (const name of TABS) $(`tab-${name}`).addEventListener("click", () => showView(name));

  // Tags: what `pixquery tag` stored; a tag shows its images, newest first.
  let tagList = [];
  async function loadTags() {
    $("tags-meta").textContent = "Loading…";
    try {
      tagList = (await api("/api/tags")).tags;
    } catch (error) {
      $("tags-meta").textContent = "";
      if (error.status !== 401) toast(error.message);
      return;
    }
    showTags();
  }

  function showTags() {
    const filter = $("tag-filter").value.trim().toLowerCase();
    const shown = tagList.filter((t) => t.tag.toLowerCase().includes(filter));
    $("tag-list").replaceChildren(...shown.map((t) => {
      const chip = button(null, t.tag, "chip", () => openTag(t.tag));
      chip.dataset.tag = t.tag;
      const n = document.createElement("span");
      n.className = "count";
      n.textContent = number(t.count);
      chip.append(n);
      chip.setAttribute("aria-label", `${t.tag}: ${plural(t.count, "image", "images")}`);
      return chip;
    }));
    $("tag-filter").hidden = tagList.length < 12;
    const meta = $("tags-meta");
    if (!tagList.length) {
      meta.textContent = "No tags yet. Tags are made on the command line and stored in the index: "
        + "pixquery tag --labels \"beach, cat, document\" (your own labels) or pixquery tag --open (common words).";
    } else {
      meta.textContent = `${plural(tagList.length, "tag", "tags")}, most used first. Pick one to see its images.`;
    }
  }
  $("tag-filter").addEventListener("input", showTags);

  function openTag(tag) {
    clearRef();
    $("q").value = "";
    setScope({ kind: "tag", tag });
    showView("photos", false);
    load();
  }

  // Clusters and duplicates are made in the background: ask for a run when none is current, then poll until done.
  const ORGANIZE = {
    clusters: {
      meta: "clusters-meta", progress: "clusters-progress", redo: "clusters-redo",
      working: "Grouping your photos…", show: showClusters,
    },
    duplicates: {
      meta: "dups-meta", progress: "dups-progress", redo: "dups-redo",
      working: "Looking for duplicates…", show: showDuplicates,
    },
  };
  const POLL_MS = 700;

  function stopPolling(kind) {
    clearTimeout(state.polls[kind]);
    delete state.polls[kind];
  }

  async function follow(kind, restart = false) {
    stopPolling(kind);
    const view = ORGANIZE[kind];
    let data;
    try {
      data = await api(`/api/${kind}`);
      const stale = data.state === "done" && !data.current;
      if (restart || data.state === "idle" || stale) {
        if (stale && data.result) view.show(data.result, true); // shown while a current one is made
        data = { ...data, ...(await api(`/api/${kind}`, { method: "POST" })) };
      }
    } catch (error) {
      $(view.meta).textContent = "";
      if (error.status !== 401) toast(error.message);
      return;
    }
    if (state.view !== kind) return;
    const bar = $(view.progress);
    $(view.redo).hidden = data.state !== "failed"; // a current result is kept: making it again changes nothing
    if (data.state === "queued" || data.state === "running") {
      const p = data.progress;
      const started = data.started_at ? Math.max(0, Math.round(Date.now() / 1000 - data.started_at)) : 0;
      let text = data.state === "queued" ? `${view.working} (waiting for another run to finish)` : view.working;
      if (p && p.total) text += ` ${p.label}: ${number(p.done)} of ${number(p.total)} ${p.unit}.`;
      if (started) text += ` ${started} s so far; this page keeps checking.`;
      $(view.meta).textContent = text;
      bar.hidden = false;
      if (p && p.total) {
        bar.max = p.total;
        bar.value = p.done;
      } else {
        bar.removeAttribute("value"); // indeterminate
      }
      state.polls[kind] = setTimeout(() => follow(kind), POLL_MS);
      return;
    }
    bar.hidden = true;
    if (data.state === "failed") {
      $(view.meta).textContent = `That did not work: ${data.error || "unknown error"}.`;
      return;
    }
    view.show(data.result, false, data);
  }

  $("clusters-redo").addEventListener("click", () => follow("clusters", true));
  $("dups-redo").addEventListener("click", () => follow("duplicates", true));

  function thumbImg(record, alt) {
    const img = document.createElement("img");
    img.src = record.thumb;
    img.alt = alt ?? record.name;
    img.loading = "lazy";
    img.decoding = "async";
    return img;
  }

  function showClusters(result, stale, run) {
    const list = $("cluster-list");
    const meta = $("clusters-meta");
    if (!result) return;
    const took = run && run.took_s != null ? ` (made in ${run.took_s.toFixed(1)} s)` : "";
    meta.textContent = stale
      ? "The index changed since these clusters were made; making new ones…"
      : `${plural(result.clusters.length, "cluster", "clusters")} of ${plural(result.images, "image", "images")}, `
        + `largest first, each named by the words that fit it best${took}. Pick one to see all its images.`;
    if (result.unclustered) meta.textContent += ` ${plural(result.unclustered, "image belongs", "images belong")} to no cluster.`;
    list.replaceChildren(...result.clusters.map((cluster) => {
      const card = document.createElement("button");
      card.type = "button";
      card.className = "card";
      card.dataset.cluster = String(cluster.id);
      card.setAttribute("aria-label", `${cluster.name}: ${plural(cluster.size, "image", "images")}`);
      const mosaic = document.createElement("span");
      mosaic.className = "mosaic";
      mosaic.append(...cluster.representatives.slice(0, 4).map((r) => thumbImg(r, "")));
      const title = document.createElement("strong");
      title.textContent = cluster.name;
      const sub = document.createElement("span");
      sub.className = "muted";
      const others = (cluster.names || []).map((n) => n.name).filter((n) => n !== cluster.name).slice(0, 2);
      sub.textContent = plural(cluster.size, "image", "images") + (others.length ? ` · also ${others.join(", ")}` : "");
      card.append(mosaic, title, sub);
      card.addEventListener("click", () => openCluster(cluster));
      return card;
    }));
  }

  function openCluster(cluster) {
    clearRef();
    $("q").value = "";
    setScope({ kind: "cluster", id: cluster.id, name: cluster.name, size: cluster.size });
    showView("photos", false);
    load();
  }

  // Duplicate groups: a review list. The page offers no way to delete, move or change a file.
  const KIND_LABELS = {
    exact: ["Exact copies", "the same bytes"],
    near: ["Near-identical", "re-saved, resized or re-encoded copies"],
    semantic: ["Look alike", "the same picture, perhaps cropped or edited: check before removing any"],
    similar: ["Similar, not copies", "similar pictures that may well both be worth keeping"],
  };
  let dupOffset = 0;
  const DUP_PAGE = 30;

  function kindsOf(group) {
    const kinds = group.kinds ?? group.tiers ?? [group.tier ?? group.kind].filter(Boolean);
    return Array.isArray(kinds) ? kinds : [String(kinds)];
  }

  function showDuplicates(result, stale, run, append = false) {
    if (!result) return;
    const list = $("dup-list");
    const meta = $("dups-meta");
    if (!append) {
      list.replaceChildren();
      dupOffset = 0;
    }
    const total = result.total ?? result.groups.length;
    if (stale) meta.textContent = "The index changed since these groups were found; looking again…";
    else if (!total) meta.textContent = "No duplicates found.";
    else {
      meta.textContent = `${plural(total, "group", "groups")} holding ${plural(result.files_in_groups ?? 0, "file", "files")}`;
      if (result.removable != null) meta.textContent += `; ${plural(result.removable, "file", "files")} besides the suggested keepers`;
      meta.textContent += ". Largest groups first.";
    }
    const start = list.children.length;
    result.groups.forEach((group, i) => list.append(groupCard(group, start + i)));
    dupOffset = start + result.groups.length;
    $("dups-more").hidden = !result.more;
  }

  function groupCard(group, number_) {
    const card = document.createElement("article");
    card.className = "group";
    const kinds = kindsOf(group);
    const head = document.createElement("header");
    const title = document.createElement("h3");
    title.textContent = `Group ${number_ + 1} · ${plural(group.size ?? group.members.length, "image", "images")}`;
    head.append(title);
    for (const kind of kinds) {
      const badge = document.createElement("span");
      badge.className = `kind kind-${kind}`;
      const [label, hint] = KIND_LABELS[kind] || [kind, ""];
      badge.textContent = label;
      badge.title = hint;
      head.append(badge);
    }
    card.setAttribute("aria-label", title.textContent);
    const reason = document.createElement("p");
    reason.className = "muted reason";
    const keeper = group.members.find((m) => m.keeper);
    reason.textContent = keeper ? `Suggested keeper: ${keeper.name || keeper.path}, ${group.reason || ""}` : group.reason || "";
    const members = document.createElement("ul");
    members.className = "members";
    const records = group.members.filter((m) => !m.gone);
    for (const m of group.members) {
      const li = document.createElement("li");
      li.className = m.keeper ? "member keeper" : "member";
      const figure = document.createElement("button");
      figure.type = "button";
      figure.className = "member-thumb";
      if (m.gone) {
        figure.disabled = true;
        figure.textContent = "gone";
      } else {
        figure.append(thumbImg(m));
        figure.setAttribute("aria-label", `Open ${m.name}`);
        figure.addEventListener("click", () => openViewer(records.indexOf(m), records));
      }
      const cap = document.createElement("div");
      cap.className = "cap";
      if (m.keeper) {
        const badge = document.createElement("span");
        badge.className = "keep";
        badge.textContent = "Suggested keeper";
        li.append(badge); // over the thumbnail, so every caption starts at the same height
      }
      const name = document.createElement("span");
      name.className = "file";
      name.textContent = m.name || m.path;
      name.title = m.path;
      const facts = document.createElement("span");
      facts.className = "muted";
      facts.textContent = [m.width ? `${m.width} × ${m.height}` : "", m.bytes ? bytes(m.bytes) : "", m.format || ""]
        .filter(Boolean).join(" · ");
      const where = document.createElement("span");
      where.className = "muted path";
      where.textContent = m.folder ? shortFolder(m.folder) : "";
      where.title = m.folder || "";
      cap.append(name, facts, where);
      li.prepend(figure);
      li.append(cap);
      members.append(li);
    }
    card.append(head, reason, members);
    return card;
  }

  $("dups-more-btn").addEventListener("click", async () => {
    try {
      const data = await api(`/api/duplicates?offset=${dupOffset}&k=${DUP_PAGE}`);
      if (data.result) showDuplicates(data.result, false, data, true);
    } catch (error) {
      toast(error.message);
    }
  });

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
      .then((folders) => {
        $("folders").replaceChildren(...folders.map((f) => new Option(`${f.count} images`, f.folder)));
        setFolders(folders);
      })
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
    $("order").value = p.get("order") === "added" ? "added" : "date";
    $("scores").checked = state.showScores;
    const cutoff = p.get("cutoff");
    // Off unless the link asks for it ("off" is what older links carry): measured on small collections the
    // calibrated cut-off keeps too few true matches to be the first thing a user sees (docs/organize.md).
    $("cutoff").checked = Boolean(cutoff) && cutoff !== "off";
    state.cutoffRule = cutoff && cutoff !== "off" ? cutoff : "auto";
    $("filters-dot").hidden = !filtersActive();
    const like = Number(p.get("like"));
    if (like > 0) {
      state.like = { id: like, thumb: `/api/thumb/${like}` };
      showRef(state.like.thumb);
      setCombine(Boolean($("q").value.trim())); // a shared link with both asked for both
    }
    const cluster = p.get("cluster");
    if (p.get("tag")) setScope({ kind: "tag", tag: p.get("tag") });
    else if (cluster !== null && /^\d+$/.test(cluster)) setScope({ kind: "cluster", id: Number(cluster) });
    const view = p.get("view") || "photos";
    if (view !== "photos") {
      showView(view);
      return;
    }
    load();
    if (!hasQuery(readQuery())) $("q").focus();
  }

  start();
})();
