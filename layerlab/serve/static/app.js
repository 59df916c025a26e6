// layerlab serve: the page. It draws what the JSON API answers (docs/serve.md) and computes no
// geometry itself: every shape, count, formula, window, matrix entry and error comes from layerlab.
// State lives in the URL (?input=3x32x32&layer=Conv2d(8,3,stride=2); repeated layer= open a stack);
// document.body.dataset.state is "busy" while the page waits for the API and "ready" once it has drawn.
"use strict";

(() => {
  // ---- the controls each layer kind shows (a form's business; the engine checks every value) -------
  const CONV_ARGS = ["out", "kernel_size", "stride", "padding", "dilation", "groups"];
  const KINDS = {
    Dense: { dims: 0, args: ["out"], out: "out features" },
    Conv1d: { dims: 1, args: CONV_ARGS },
    Conv2d: { dims: 2, args: CONV_ARGS },
    LocallyConnected1d: { dims: 1, args: CONV_ARGS },
    LocallyConnected2d: { dims: 2, args: CONV_ARGS },
    TiledConv1d: { dims: 1, args: [...CONV_ARGS, "tile_size"] },
    TiledConv2d: { dims: 2, args: [...CONV_ARGS, "tile_size"] },
    ConvTranspose1d: { dims: 1, args: [...CONV_ARGS, "output_padding"] },
    ConvTranspose2d: { dims: 2, args: [...CONV_ARGS, "output_padding"] },
    LocallyConnectedTranspose1d: { dims: 1, args: [...CONV_ARGS, "output_padding"] },
    LocallyConnectedTranspose2d: { dims: 2, args: [...CONV_ARGS, "output_padding"] },
    LowRankLocallyConnected1d: { dims: 1, args: [...CONV_ARGS, "rank"] },
    LowRankLocallyConnected2d: { dims: 2, args: [...CONV_ARGS, "rank"] },
    MaxPool1d: { dims: 1, args: ["kernel_size", "stride", "padding", "dilation"] },
    MaxPool2d: { dims: 2, args: ["kernel_size", "stride", "padding", "dilation"] },
    AvgPool1d: { dims: 1, args: ["kernel_size", "stride", "padding"] },
    AvgPool2d: { dims: 2, args: ["kernel_size", "stride", "padding"] },
  };
  const ALIASES = { Linear: "Dense" };
  const KEYWORDS = ["stride", "padding", "dilation", "groups", "output_padding", "tile_size", "rank"];
  const FAMILY = [["conv", "convolution"], ["tiled", "tiled convolution"], ["local", "locally connected"], ["dense", "dense"]];
  const DEFAULT = { input: "1x8x8", layers: ["Conv2d(1, 3)"] };
  const MAX_TIP_LINKS = 6;
  const FIRST_VALUES = { "in-channels": "1", "in-h": "8", "in-w": "8", "in-features": "16", "arg-out": "4", "arg-kernel_size": "3", "arg-rank": "2" };

  const $ = (id) => document.getElementById(id);
  const state = { view: "layer", input: "", layers: [], model: false, seq: 0, hoverSeq: 0, pending: 0, rfIndex: -1, rfCell: null };
  let current = null; // the API's answer for the layer on screen
  let matrixData = null; // the API's matrix on screen

  // ---- busy/ready marker: tests and the benchmark wait for "ready" -----------------------------------
  function busy() { state.pending += 1; document.body.dataset.state = "busy"; }
  function done() {
    state.pending = Math.max(0, state.pending - 1);
    if (state.pending === 0) document.body.dataset.state = "ready";
  }

  // ---- the API -------------------------------------------------------------------------------------
  async function api(path, params) {
    const query = new URLSearchParams(params);
    const response = await fetch(`${path}?${query}`, { headers: { Accept: "application/json" } });
    let body;
    try {
      body = await response.json();
    } catch (err) {
      body = { error: { message: `${path} answered HTTP ${response.status} without JSON` } };
    }
    return { ok: response.ok, status: response.status, body };
  }
  // the engine's message of a refused request ({"error": {"message", "layer", "parameter"}})
  function errorText(answer) {
    const error = answer.body && answer.body.error;
    if (error && typeof error === "object" && error.message) return error.message;
    return typeof error === "string" ? error : `layerlab serve answered HTTP ${answer.status}`;
  }
  const stackParams = () => [["input", state.input], ...state.layers.map((layer) => ["layer", layer])];

  // ---- formatting: numbers are shown as the API gives them --------------------------------------------
  const NUMBER = new Intl.NumberFormat("en-US");
  const count = (n) => (n === null || n === undefined ? "—" : NUMBER.format(n));
  const shapeText = (shape) => shape.join("×");
  const cellText = (pos) => `(${pos})`;
  function el(tag, attrs = {}, text = "") {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    if (text !== "") node.textContent = text;
    return node;
  }
  const fillList = (list, items) => list.replaceChildren(...items.map((item) => el("li", {}, item)));
  const setTestid = (name, text) => { document.querySelector(`[data-testid="${name}"]`).textContent = text; };
  function unflat(flat, shape) {
    // the C-major (row-major) index of a flat position: how docs/serve.md numbers matrix rows/columns
    const index = [];
    for (let d = shape.length - 1; d >= 0; d -= 1) {
      index.unshift(flat % shape[d]);
      flat = Math.floor(flat / shape[d]);
    }
    return index.join(",");
  }

  // ---- errors: the engine's text in place; the view it replaces is hidden, never left stale -------------
  // (hidden by a class that keeps its layout: display:none would drop the layout of every grid cell,
  // and the browser would lay out thousands of cells again when the next answer shows it)
  function showError(message) {
    $("error-slot").replaceChildren(el("pre", { class: "error", "data-testid": "error", role: "alert" }, message));
    $("result").classList.add("refused");
  }
  function clearError() {
    $("error-slot").replaceChildren();
    $("result").classList.remove("refused");
  }

  // ---- URL <-> state ---------------------------------------------------------------------------------
  const kindOf = (layer) => {
    const name = String(layer || "").split("(")[0].trim();
    return ALIASES[name] || name;
  };
  const isSingleLayer = () => state.layers.length === 1 && kindOf(state.layers[0]) in KINDS && !state.model;
  function readUrl() {
    const params = new URLSearchParams(location.search);
    state.input = params.get("input") || "";
    state.layers = params.getAll("layer");
    state.model = params.get("model") === "1";
    if (!state.input && !state.layers.length && !state.model) {
      state.input = DEFAULT.input;
      state.layers = [...DEFAULT.layers];
    }
    // the stack view's chosen layer and unit (the receptive field drawn)
    state.rfIndex = Number(params.get("index")) || -1;
    state.rfCell = params.get("out");
    const asked = params.get("view");
    state.view = asked === "stack" || !isSingleLayer() ? "stack" : "layer";
  }
  function writeUrl() {
    const params = new URLSearchParams();
    if (state.model) params.set("model", "1");
    else {
      params.set("input", state.input);
      for (const layer of state.layers) params.append("layer", layer);
      if (state.view === "stack" && isSingleLayer()) params.set("view", "stack");
    }
    if (state.view === "stack" && state.rfIndex > 0) params.set("index", String(state.rfIndex));
    if (state.view === "stack" && state.rfCell) params.set("out", state.rfCell);
    const query = params.toString().replace(/%2C/g, ",").replace(/%28/g, "(").replace(/%29/g, ")").replace(/%3D/g, "=").replace(/%27/g, "'");
    history.replaceState(null, "", `${location.pathname}?${query}`);
  }

  // ---- layer view controls -------------------------------------------------------------------------------
  function sizeText(text) {
    // "3" -> "3"; "3,5" / "3x5" / "(3, 5)" -> "(3,5)"; "same" -> "'same'"; anything else as typed
    const raw = String(text).trim();
    if (raw === "same" || raw === "valid") return `'${raw}'`;
    const parts = raw.replace(/[()[\]]/g, "").split(/[\s,x×]+/).filter(Boolean);
    return parts.length > 1 ? `(${parts.join(",")})` : parts[0] ?? raw;
  }
  const controlValue = (name) => $(`arg-${name}`).value.trim();
  function layerFromControls() {
    const kind = $("kind").value;
    const args = KINDS[kind].args;
    const parts = [];
    if (args.includes("out")) parts.push(controlValue("out") || "?");
    if (args.includes("kernel_size")) parts.push(sizeText(controlValue("kernel_size") || "?"));
    for (const name of KEYWORDS) {
      if (args.includes(name) && controlValue(name) !== "") parts.push(`${name}=${sizeText(controlValue(name))}`);
    }
    return `${kind}(${parts.join(",")})`;
  }
  function inputFromControls() {
    const dims = KINDS[$("kind").value].dims;
    if (dims === 0) return $("in-features").value.trim();
    return [$("in-channels"), $("in-h"), $("in-w")].slice(0, dims + 1).map((input) => input.value.trim()).join("x");
  }
  function showControlsFor(kind) {
    const spec = KINDS[kind];
    for (const label of document.querySelectorAll("#controls [data-arg]")) label.hidden = !spec.args.includes(label.dataset.arg);
    const shown = { channels: spec.dims > 0, spatial: spec.dims > 0, spatial2: spec.dims > 1, features: spec.dims === 0 };
    for (const label of document.querySelectorAll("#controls [data-for]")) label.hidden = !shown[label.dataset.for];
    $("out-label").querySelector("span").textContent = spec.out || "out channels";
    // a field the new kind needs and nobody filled yet starts at a small example value
    for (const [id, value] of Object.entries(FIRST_VALUES)) {
      const field = $(id);
      if (field.value === "" && !field.closest("label").hidden) field.value = value;
    }
    $("in-h").previousSibling.textContent = spec.dims === 1 ? "length " : "height ";
  }
  function argumentParts(text) {
    // the top-level comma-separated parts inside a layer's parentheses, e.g. "Conv2d(8, (3,5), stride=2)"
    // -> ["8", "(3,5)", "stride=2"]
    const inner = text.slice(text.indexOf("(") + 1, text.lastIndexOf(")"));
    const parts = [];
    let depth = 0;
    let start = 0;
    for (let k = 0; k <= inner.length; k += 1) {
      const ch = inner[k];
      if (ch === "(") depth += 1;
      else if (ch === ")") depth -= 1;
      else if ((ch === "," && depth === 0) || k === inner.length) {
        parts.push(inner.slice(start, k).trim());
        start = k + 1;
      }
    }
    return parts.filter(Boolean);
  }
  // a value as a form field holds it: "'same'" -> "same", "(3, 5)" -> "3,5"
  const fieldValue = (value) => value.trim().replace(/^'(.*)'$/, "$1").replace(/^\((.*)\)$/, "$1").replace(/\s+/g, "");
  function describedArguments(text) {
    // the engine's describe() of the layer, e.g. "Conv2d(? → 8, kernel_size=3, stride=2)": the
    // arguments as layerlab parsed them, so that a URL fills the form
    const args = {};
    for (const part of argumentParts(text)) {
      const arrow = part.indexOf("→");
      const equals = part.indexOf("=");
      if (arrow >= 0 && (equals < 0 || arrow < equals)) args.out = part.slice(arrow + 1).trim();
      else if (equals > 0) args[part.slice(0, equals).trim()] = fieldValue(part.slice(equals + 1));
    }
    return args;
  }
  function typedArguments(text, kind) {
    // the arguments of a layer string as typed, e.g. "Conv2d(8, 7, stride=2)": positional ones in the
    // order the form lists them (out, kernel_size), keywords by name
    const positional = KINDS[kind].args.filter((name) => name === "out" || name === "kernel_size");
    const args = {};
    for (const part of argumentParts(text)) {
      const equals = part.indexOf("=");
      if (equals > 0) args[part.slice(0, equals).trim()] = fieldValue(part.slice(equals + 1));
      else if (positional.length) args[positional.shift()] = fieldValue(part);
    }
    return args;
  }
  function fillArguments(args) {
    for (const name of ["out", "kernel_size", ...KEYWORDS]) $(`arg-${name}`).value = args[name] ?? "";
    syncGroupsSlider();
  }
  function syncGroupsSlider() {
    // the slider runs from 1 (every input channel feeds every output channel) to the input channels
    // (depthwise: one input channel a group); the engine says which counts divide the channels
    const slider = $("groups-slider");
    slider.max = String(Math.max(1, Number($("in-channels").value) || 1));
    slider.value = $("arg-groups").value || "1";
  }
  function depthwise() {
    // one group per input channel; out channels stay when they are a multiple of the input channels
    const channels = $("in-channels").value.trim();
    $("arg-groups").value = channels;
    if (Number($("arg-out").value) % Number(channels) !== 0) $("arg-out").value = channels;
    syncGroupsSlider();
    onControlChange();
  }
  function fillControls(layer) {
    const kind = ALIASES[layer.kind] || layer.kind;
    if (!(kind in KINDS)) return;
    $("kind").value = kind;
    showControlsFor(kind);
    const shape = layer.input_shape;
    if (KINDS[kind].dims === 0) $("in-features").value = shape[shape.length - 1];
    else {
      $("in-channels").value = shape[0];
      $("in-h").value = shape[1];
      $("in-w").value = shape.length > 2 ? shape[2] : "";
    }
    fillArguments(describedArguments(layer.layer));
  }

  function fillControlsFromUrl() {
    // a layer the engine refused: the form shows the URL's kind, input and arguments as written,
    // never those of another layer
    const kind = kindOf(state.layers[0]);
    if (kind in KINDS) {
      $("kind").value = kind;
      showControlsFor(kind);
    }
    const sizes = state.input.split("x");
    if (kind in KINDS && KINDS[kind].dims === 0) $("in-features").value = state.input;
    else [$("in-channels").value, $("in-h").value, $("in-w").value] = [sizes[0] ?? "", sizes[1] ?? "", sizes[2] ?? ""];
    fillArguments(kind in KINDS ? typedArguments(state.layers[0], kind) : {});
  }

  // ---- grids of cells ---------------------------------------------------------------------------------
  // The API says which part of a map is drawn (grid.channels_shown, grid.cells_shown); cells carry
  // data-testid and data-pos ("c,i,j", "c,i" or "i"), lit cells data-active="true".
  // a grid's box: cols × rows slots of `size` px and 1 px gaps, fixed so its layout stays inside it.
  // Plain properties, not CSS variables: a variable is inherited, so changing one restyles every cell
  const gridBox = (cols, rows, size) => `grid-template-columns:repeat(${cols},${size}px);grid-auto-rows:${size}px;`
    + `background-image:${["right", "bottom"].map((to) => `repeating-linear-gradient(to ${to},var(--line) 0 1px,transparent 1px ${size + 1}px)`).join(",")};`
    + `width:${cols * (size + 1) + 1}px;height:${rows * (size + 1) + 1}px`;
  function cellSize(cols) { return Math.max(5, Math.min(16, Math.floor(400 / cols) - 1)); }
  const gridCols = (grid) => (grid.shape.length === 1 ? Math.min(grid.cells_shown, 32) : grid.shape[grid.shape.length - 1]);
  // A slot's key orders the slots as the DOM does and names its position: features k; a (C, L) map
  // c·2¹⁶ + i; a (C, H, W) map (i·2¹⁰ + c)·2¹⁶ + j, a gap slot with j = GAP (after its channel's cells)
  const GAP = 65535;
  function gridLayout(grid) {
    // the slots of one map's box in row-major order: `cols` × `rows`, and the data-pos (null: a gap
    // slot) and key of slot k. Features wrap at 32 a row; a (C, L) map has one channel a row; a
    // (C, H, W) map has its channels side by side, one gap slot apart.
    const shape = grid.shape;
    const channels = grid.channels_shown;
    if (shape.length === 1) {
      const cols = gridCols(grid);
      return { rank: 1, cols, rows: Math.ceil(grid.cells_shown / cols), slots: grid.cells_shown, pos: (k) => String(k), key: (k) => k };
    }
    if (shape.length === 2) {
      const length = shape[1];
      return { rank: 2, cols: length, rows: channels, slots: channels * length,
        pos: (k) => `${Math.floor(k / length)},${k % length}`, key: (k) => Math.floor(k / length) * 65536 + (k % length),
        place: ([c, i]) => [i, c] };
    }
    const width = shape[2];
    const cols = channels * (width + 1) - 1;
    const split = (k) => { // [row, channel, column (GAP for a gap slot)]
      const x = k % cols;
      const j = x % (width + 1);
      return [Math.floor(k / cols), (x - j) / (width + 1), j === width ? GAP : j];
    };
    return { rank: 3, cols, rows: shape[1], slots: shape[1] * cols,
      pos: (k) => { const [i, c, j] = split(k); return j === GAP ? null : `${c},${i},${j}`; },
      key: (k) => { const [i, c, j] = split(k); return (i * 1024 + c) * 65536 + j; },
      place: ([c, i, j]) => [c * (width + 1) + j, i] };
  }
  const slotMarkup = (pos, testid) => (pos === null ? '<i class="gap"></i>' : `<i data-testid="${testid}" data-pos="${pos}"></i>`);
  function renameSlot(slot, pos, testid) {
    if (pos === null) {
      if (slot.className === "gap") return;
      slot.className = "gap";
      slot.removeAttribute("data-testid");
      slot.removeAttribute("data-pos");
      return;
    }
    if (slot.className === "gap") {
      slot.removeAttribute("class");
      slot.setAttribute("data-testid", testid);
    }
    slot.setAttribute("data-pos", pos);
  }
  // what the browser spends on one slot, in renames: making one (element, style, layout) ~4, renaming
  // one (attribute change) 1, removing one ~0.3 (headless Chromium on a 2-core VM: ~12, ~3, ~1 µs)
  const COST = { make: 4, rename: 1, remove: 0.3 };
  function reconcile(box, layout, testid) {
    // make the box's slots the layout's, by the cheaper of two ways: by key (a slot whose position
    // stays is left alone, a new one made in place, a gone one removed: a grown or shrunk map), or in
    // order (slots renamed first to last, made or removed at the end: channels reshuffled)
    const sameRank = box._rank === layout.rank; // else the keys mean other positions: no slot is kept by key
    const old = box._keys || [];
    const oldSlots = box._slots || [];
    const keys = Array.from({ length: layout.slots }, (_, k) => layout.key(k));
    let same = 0; // slots whose key stays
    for (let a = 0, k = 0; sameRank && k < keys.length; k += 1) {
      while (a < old.length && old[a] < keys[k]) a += 1;
      if (a < old.length && old[a] === keys[k]) { same += 1; a += 1; }
    }
    const common = Math.min(old.length, keys.length);
    const byKey = COST.make * (keys.length - same) + COST.remove * (old.length - same);
    const inOrder = COST.make * (keys.length - common) + COST.rename * common + COST.remove * (old.length - common);
    let fresh = ""; // the markup of new slots waiting to go in before the next kept one (parsed in one go)
    const add = (k) => { fresh += slotMarkup(layout.pos(k), testid); };
    if (byKey <= inOrder) {
      if (!sameRank) box.replaceChildren();
      const kept = sameRank ? old : [];
      let a = 0;
      for (let k = 0; k < keys.length; k += 1) {
        while (a < kept.length && kept[a] < keys[k]) { oldSlots[a].remove(); a += 1; }
        if (a < kept.length && kept[a] === keys[k]) {
          if (fresh) { oldSlots[a].insertAdjacentHTML("beforebegin", fresh); fresh = ""; }
          a += 1;
        } else add(k);
      }
      for (; a < kept.length; a += 1) oldSlots[a].remove();
    } else {
      for (let a = old.length - 1; a >= common; a -= 1) oldSlots[a].remove();
      for (let k = 0; k < common; k += 1) {
        if (!sameRank || old[k] !== keys[k]) renameSlot(oldSlots[k], layout.pos(k), testid);
      }
      for (let k = common; k < keys.length; k += 1) add(k);
    }
    if (fresh) box.insertAdjacentHTML("beforeend", fresh);
    box._keys = keys;
    box._slots = Array.from(box.children);
    box._rank = layout.rank;
  }
  function gridParts(container) {
    // a map's parts, made once and kept: channel labels, the box of slots (or the canvas of a map with
    // too many positions for one element per cell), the note on what is not drawn
    if (!container._box) {
      container.replaceChildren(el("div", { class: "labels" }), el("div", { class: "grid" }),
        el("canvas", { class: "map", hidden: "" }), el("div", { class: "more" }));
      [container._labels, container._box, container._canvas, container._more] = container.children;
    }
    return [container._labels, container._box, container._canvas, container._more];
  }
  function buildGrid(container, grid, testid, extraClass, size) {
    // the box and its slots are kept across redraws and changed as little as they can be
    // (reconcile), so that a redraw makes few elements for the browser to style and lay out
    const shape = grid.shape;
    const key = `${shape.join("x")}:${grid.channels_shown}:${grid.cells_shown}:${grid.drawn}:${size}`;
    if (container.dataset.key === key) return; // same cells: keep them
    container.dataset.key = key;
    container._cells = null; // the lookup is built at the first hover
    const [labels, box, canvas, more] = gridParts(container);
    box.className = `grid ${extraClass}`;
    const cells = grid.drawn && !grid.canvas;
    if (!cells && box.childElementCount) {
      box.replaceChildren();
      box._keys = box._slots = box._rank = null;
    }
    box.hidden = !cells;
    canvas.hidden = !grid.canvas;
    container._map = null;
    if (!grid.drawn) {
      labels.replaceChildren();
      more.textContent = `${shapeText(shape)}: too many positions to draw`;
      return;
    }
    const layout = gridLayout(grid);
    if (grid.canvas) {
      canvas.dataset.testid = testid.replace("-cell", "-map");
      container._map = { layout, size, out: extraClass === "out", lit: [], hovered: null, pointer: null };
      paintMap(container);
    } else {
      box.setAttribute("style", gridBox(layout.cols, layout.rows, size));
      reconcile(box, layout, testid);
    }
    // a label over each channel of a (C, H, W) map; a (C, L) map says that its rows are channels
    const channels = shape.length === 1 ? 0 : grid.channels_shown;
    labels.replaceChildren(...(shape.length === 3
      ? Array.from({ length: channels }, (_, c) => el("span", { style: `width:${shape[2] * (size + 1)}px;margin-right:${size + 1}px` }, `channel ${c}`))
      : shape.length === 2 ? [el("span", {}, `one row per channel (0…${channels - 1})`)] : []));
    const hidden = shape.length === 1 ? shape[0] - grid.cells_shown : shape[0] - channels;
    const first = shape.length === 1 ? grid.cells_shown : channels;
    const what = shape.length === 1 ? "feature" : "channel";
    more.textContent = hidden <= 0 ? "" : hidden === 1 ? `${what} ${first} not drawn` : `${what}s ${first}…${shape[0] - 1} not drawn`;
  }
  function paintMap(container) {
    // the slots of gridLayout painted: cells in the map's colour, 1 px lines, white gap columns, lit
    // cells in the lit colour, the hovered one framed
    const { layout, size, out, lit, hovered } = container._map;
    const canvas = container._canvas;
    const step = size + 1;
    const [width, height] = [layout.cols * step + 1, layout.rows * step + 1];
    if (canvas.width !== width || canvas.height !== height) [canvas.width, canvas.height] = [width, height];
    const context = canvas.getContext("2d");
    context.fillStyle = colour(out ? "--out" : "--in");
    context.fillRect(0, 0, width, height);
    context.fillStyle = colour("--line");
    for (let x = 0; x <= layout.cols; x += 1) context.fillRect(x * step, 0, 1, height);
    for (let y = 0; y <= layout.rows; y += 1) context.fillRect(0, y * step, width, 1);
    context.fillStyle = "#fff";
    for (let k = 0; k < layout.cols; k += 1) if (layout.pos(k) === null) context.fillRect(k * step, 0, step + 1, height);
    const square = (pos) => layout.place(pos.split(",").map(Number)).map((v) => v * step + 1);
    context.fillStyle = colour(out ? "--lit-out" : "--lit");
    for (const pos of lit) {
      const [x, y] = square(pos);
      context.fillRect(x, y, size, size);
    }
    if (hovered !== null) {
      const [x, y] = square(hovered);
      context.strokeStyle = colour("--ink");
      context.lineWidth = 2;
      context.strokeRect(x, y, size, size);
    }
  }
  function mapCell(container, event) {
    // the position under the mouse on a canvas map (null: a line or a gap)
    const { layout, size } = container._map;
    const [x, y] = [event.offsetX, event.offsetY].map((v) => Math.floor((v - 1) / (size + 1)));
    return x >= 0 && y >= 0 && x < layout.cols && y < layout.rows ? layout.pos(y * layout.cols + x) : null;
  }
  const COLOURS = new Map();
  function colour(name) {
    // the style sheet's colour variables, read once
    if (!COLOURS.has(name)) COLOURS.set(name, getComputedStyle(document.documentElement).getPropertyValue(name).trim());
    return COLOURS.get(name);
  }
  function cellsOf(container) {
    if (!container._cells) {
      container._cells = new Map();
      for (const cell of container.querySelectorAll("[data-pos]")) container._cells.set(cell.dataset.pos, cell);
    }
    return container._cells;
  }
  function light(container, positions) {
    if (container._map) {
      container._map.lit = positions;
      paintMap(container);
      return;
    }
    const cells = cellsOf(container);
    for (const pos of positions) {
      const cell = cells.get(pos);
      if (cell) cell.dataset.active = "true";
    }
  }
  function unlight(container) {
    if (container._map) {
      Object.assign(container._map, { lit: [], hovered: null });
      paintMap(container);
      return;
    }
    for (const cell of container.querySelectorAll('[data-active="true"]')) delete cell.dataset.active;
    for (const cell of container.querySelectorAll(".hovered")) cell.classList.remove("hovered");
  }

  // ---- the layer view -------------------------------------------------------------------------------
  async function drawLayer(fromControls) {
    const seq = ++state.seq;
    state.hoverSeq += 1;
    busy();
    try {
      // both asked at once and drawn together: one frame for the browser to style, lay out and paint
      const [answer, matrix] = await Promise.all([api("/api/view", stackParams()), api("/api/matrix", stackParams())]);
      if (seq !== state.seq) return; // a newer change is on its way
      if (document.activeElement !== $("layer-string")) $("layer-string").value = state.layers[0];
      if (!answer.ok) {
        current = null;
        if (!fromControls) fillControlsFromUrl();
        showError(errorText(answer));
        return;
      }
      clearError();
      renderLayer(answer.body.layer, fromControls);
      renderMatrix(matrix.ok ? matrix.body : null, matrix.ok ? "" : errorText(matrix));
    } catch (err) {
      if (seq === state.seq) showError(`the page could not reach layerlab serve: ${err.message}`);
    } finally {
      // the URL is written once the view is drawn: the browser's own work for a history entry then
      // does not compete with the API's answers and the drawing
      if (seq === state.seq) writeUrl();
      done();
    }
  }

  function renderLayer(layer, fromControls) {
    current = layer;
    if (!fromControls) fillControls(layer);
    setTestid("output-shape", layer.output_shape_text);
    setTestid("params", count(layer.params));
    setTestid("macs", count(layer.macs));
    fillList($("formulas"), layer.formulas);
    fillList($("warnings"), layer.warnings);
    renderFamily(layer);
    $("code-torch").textContent = layer.code ? layer.code.torch : "";
    $("code-layerlab").textContent = layer.code ? layer.code.layerlab : "";
    // one cell size for both grids, so that a window looks as large as it is
    const size = cellSize(Math.max(gridCols(layer.grid.input), gridCols(layer.grid.output)));
    buildGrid($("in-grid"), layer.grid.input, "in-cell", "in", size);
    buildGrid($("out-grid"), layer.grid.output, "out-cell", "out", size);
    $("in-note").textContent = shapeText(layer.input_shape);
    $("out-note").textContent = shapeText(layer.output_shape);
    for (const id of ["in-grid", "out-grid"]) unlight($(id));
    $("matrix-band").hidden = true;
    $("w-grid").replaceChildren(el("div", { class: "more" }, "hover a cell"));
    $("w-note").textContent = "";
    $("hover-info").textContent = "hover a cell";
    renderCoverage(layer.coverage || null);
  }

  function renderFamily(layer) {
    const table = $("compare");
    table.replaceChildren();
    const head = el("tr");
    for (const title of ["same geometry as", "layer", "params", "MACs"]) head.append(el("th", {}, title));
    table.append(el("thead"));
    table.firstChild.append(head);
    const body = el("tbody");
    for (const [key, title] of FAMILY) {
      const entry = layer.family[key];
      if (!entry) continue;
      const mine = entry.layer !== null && entry.layer === layer.layer;
      const tr = el("tr", mine ? { class: "current" } : {});
      tr.append(el("td", {}, title), el("td", { class: "layer" }, entry.layer ?? entry.reason ?? ""),
        el("td", {}, count(entry.params)), el("td", {}, count(entry.macs)));
      body.append(tr);
    }
    table.append(body);
  }

  function renderCoverage(coverage) {
    // the checkerboard: one square per output position, coloured by its count (numbers when they fit)
    const panel = $("coverage-panel");
    if (!coverage) { panel.hidden = true; return; }
    panel.hidden = false;
    const canvas = $("coverage");
    const padding = coverage.output_padding.map((positions) => new Set(positions));
    const added = padding.some((set) => set.size) ? ` · red frame: the positions output_padding adds (${padding.map((s) => [...s].join(",") || "none").join(" | ")})` : "";
    if (!coverage.counts) {
      canvas.width = canvas.height = 1;
      $("coverage-note").textContent = `${coverage.reason}${added}`;
      return;
    }
    const rows = Array.isArray(coverage.counts[0]) ? coverage.counts : [coverage.counts];
    const cols = rows[0].length;
    const size = cellSize(cols) + 1;
    canvas.width = cols * size;
    canvas.height = rows.length * size;
    const context = canvas.getContext("2d");
    const span = Math.max(1, coverage.max - coverage.min);
    // one path per count (one colour each) and one for the output-padding frames: a few draw calls
    const squares = new Map();
    const frames = new Path2D();
    rows.forEach((row, i) => {
      row.forEach((n, j) => {
        if (!squares.has(n)) squares.set(n, new Path2D());
        squares.get(n).rect(j * size, i * size, size - 1, size - 1);
        if (rows.length > 1 ? padding[0].has(i) || padding[1].has(j) : padding[0].has(j)) {
          frames.rect(j * size + 1, i * size + 1, size - 3, size - 3);
        }
      });
    });
    for (const [n, path] of squares) {
      context.fillStyle = rampColour((n - coverage.min) / span);
      context.fill(path);
    }
    if (size >= 13) {
      // (a font makes the browser compute the page's styles at once: set only where numbers are drawn)
      context.font = `${Math.max(8, size - 6)}px ui-monospace, "DejaVu Sans Mono", monospace`;
      context.textAlign = "center";
      context.textBaseline = "middle";
      rows.forEach((row, i) => {
        row.forEach((n, j) => {
          context.fillStyle = (n - coverage.min) / span > 0.6 ? "#000" : "#fff";
          context.fillText(String(n), j * size + (size - 1) / 2, i * size + size / 2);
        });
      });
    }
    context.strokeStyle = "#e11d48";
    context.lineWidth = 2;
    context.stroke(frames);
    $("coverage-note").textContent = `input cells per input channel that reach each output position: ${coverage.min} to ${coverage.max}${added}`;
  }

  // ---- hover: the API names the linked cells and their weights ---------------------------------------------
  async function hoverCell(side, pos) {
    if (!current) return;
    const seq = ++state.hoverSeq;
    busy();
    try {
      const answer = await api("/api/links", [...stackParams(), [side, pos]]);
      if (seq !== state.hoverSeq) return;
      for (const id of ["in-grid", "out-grid"]) unlight($(id));
      if (!answer.ok) {
        $("hover-info").textContent = errorText(answer);
        return;
      }
      const links = answer.body;
      const own = side === "out" ? $("out-grid") : $("in-grid");
      if (own._map) {
        own._map.hovered = pos;
        paintMap(own);
      } else {
        const cell = cellsOf(own).get(pos);
        if (cell) cell.classList.add("hovered");
      }
      const other = side === "out" ? links.in : links.out;
      light(side === "out" ? $("in-grid") : $("out-grid"), other);
      renderWeights(links, side);
      showBand(side, pos);
      const what = side === "out" ? `output ${cellText(pos)} reads ${other.length} input cell(s)` : `input ${cellText(pos)} feeds ${other.length} output cell(s)`;
      const ids = new Set(links.links.map((link) => link.weight).filter((w) => w !== null));
      $("hover-info").textContent = `${what}${ids.size ? ` through ${ids.size} weight(s)` : ""}`;
    } finally {
      done();
    }
  }
  function renderWeights(links, side) {
    // the weights the hovered cell uses: one chip per weight id (the matrix's colour for that id)
    const box = $("w-grid");
    const withWeights = links.links.filter((link) => link.weight !== null);
    if (!withWeights.length) {
      box.replaceChildren(el("div", { class: "more" }, links.weights ? "" : "this layer has no weights: the window itself is the operation"));
      $("w-note").textContent = "";
      return;
    }
    const chips = el("div", { class: "chips" });
    const seen = new Map();
    for (const link of withWeights) {
      if (!seen.has(link.weight)) seen.set(link.weight, []);
      seen.get(link.weight).push(link);
    }
    for (const [weight, uses] of seen) {
      // the entry of the weight tensor (weight_shape: torch's layout, layerlab's for local/tiled layers)
      const index = links.weight_shape && links.weight_shape.length ? `weight[${unflat(weight, links.weight_shape)}]` : `weight ${weight}`;
      const chip = el("span", { class: "chip", "data-testid": "w-cell", "data-weight": weight,
        style: `background:${cssColour(tieColour(weight))}` }, index.replace("weight", "w"));
      const where = uses.slice(0, MAX_TIP_LINKS).map((link) => `${side === "out" ? "in" : "out"} ${cellText(side === "out" ? link.in : link.out)}${link.tap ? ` tap (${link.tap})` : ""}`);
      // a low-rank layer mixes the same tap of all its basis kernels (the API's `basis`)
      const mix = uses[0].basis ? ` mixed with ${uses[0].basis.slice(1).map((b) => `weight[${unflat(b, links.weight_shape)}]`).join(", ")}` : "";
      chip.title = `${index} (id ${weight})${mix}: ${where.join("; ")}${uses.length > MAX_TIP_LINKS ? "; …" : ""}`;
      chips.append(chip);
    }
    box.replaceChildren(chips);
    const bases = withWeights[0].basis ? ` × ${withWeights[0].basis.length} basis kernels` : ""; // a low-rank mix
    $("w-note").textContent = `${seen.size}${bases} of ${count(links.weights)}${links.weight_shape && links.weight_shape.length ? ` (weight ${shapeText(links.weight_shape)})` : ""}`;
  }
  function showBand(side, pos) {
    // the hovered cell's row (output) or column (input) of the matrix: its C-major flat index
    const band = $("matrix-band");
    if (!matrixData) { band.hidden = true; return; }
    const shape = side === "out" ? matrixData.output_shape : matrixData.input_shape;
    const flat = pos.split(",").reduce((acc, v, d) => acc * shape[d] + Number(v), 0);
    const exact = matrixData.mode === "exact";
    const edges = exact ? null : side === "out" ? matrixData.bins.row_edges : matrixData.bins.col_edges;
    const index = exact ? flat : edges.findIndex((edge, k) => edge <= flat && flat < edges[k + 1]);
    const canvas = $("matrix");
    const width = canvas.getBoundingClientRect().width;
    const height = canvas.getBoundingClientRect().height;
    const along = side === "out" ? height / canvas.height : width / canvas.width;
    const start = `${index * along}px`;
    const size = `${Math.max(2, along)}px`;
    Object.assign(band.style, side === "out" ? { left: "0px", width: `${width}px`, top: start, height: size }
      : { top: "0px", height: `${height}px`, left: start, width: size });
    band.hidden = false;
  }
  function leaveGrids() {
    $("matrix-band").hidden = true;
    state.hoverSeq += 1;
    for (const id of ["in-grid", "out-grid"]) unlight($(id));
    $("hover-info").textContent = "hover a cell";
  }

  // ---- the dense-equivalent matrix ---------------------------------------------------------------------
  function renderMatrix(matrix, error) {
    const canvas = $("matrix");
    matrixData = matrix;
    $("matrix-tip").hidden = true;
    if (!matrix) {
      canvas.width = 1;
      canvas.height = 1;
      canvas.style.width = canvas.style.height = "1px";
      $("colourbar").hidden = true;
      $("matrix-note").textContent = error;
      return;
    }
    const exact = matrix.mode === "exact";
    const rows = exact ? matrix.rows : matrix.bins.row_edges.length - 1;
    const cols = exact ? matrix.cols : matrix.bins.col_edges.length - 1;
    const scale = Math.min(12, 880 / cols, 520 / rows); // CSS pixels per entry (or bin)
    if (canvas.width !== cols || canvas.height !== rows) [canvas.width, canvas.height] = [cols, rows];
    const size = [`${cols * scale}px`, `${rows * scale}px`];
    if (canvas.style.width !== size[0] || canvas.style.height !== size[1]) [canvas.style.width, canvas.style.height] = size;
    const context = canvas.getContext("2d");
    const image = context.createImageData(cols, rows);
    const pixels = new Uint32Array(image.data.buffer);
    if (exact) {
      let k = 0;
      for (const row of matrix.ids) {
        for (const id of row) {
          if (id !== matrix.zero) pixels[k] = rgbaWord(tieColour(id));
          k += 1;
        }
      }
      $("colourbar").hidden = true;
    } else {
      // the bins that hold connections, row-major; the others stay blank
      const bins = matrix.bins;
      const top = bins.max_fraction || 1;
      bins.at = new Map(); // bin (row·cols + col) -> its place in the lists, for the tooltip
      bins.rows.forEach((row, k) => {
        pixels[row * cols + bins.cols[k]] = rgbaWord(ramp(bins.fraction[k] / top));
        bins.at.set(row * cols + bins.cols[k], k);
      });
      drawColourbar(bins.max_fraction);
    }
    context.putImageData(image, 0, 0);
    const summary = `${count(matrix.rows)} × ${count(matrix.cols)} (outputs × inputs), ${count(matrix.connections)} connections, ${count(matrix.weights)} weights`;
    $("matrix-note").textContent = exact ? `${summary} · one colour per weight, blank: structural zero`
      : `${summary} · aggregated into ${rows} × ${cols} bins`;
  }
  function drawColourbar(top) {
    $("colourbar").hidden = false;
    const canvas = $("colourbar-canvas");
    if (!canvas.dataset.painted) { // the ramp is the same for every matrix: painted once
      const context = canvas.getContext("2d");
      for (let y = 0; y < canvas.height; y += 1) {
        context.fillStyle = rampColour(1 - y / (canvas.height - 1));
        context.fillRect(0, y, canvas.width, 1);
      }
      canvas.dataset.painted = "true";
    }
    const percent = (v) => `${Number((100 * v).toPrecision(3))}%`;
    $("colourbar-labels").replaceChildren(el("span", {}, `${percent(top)} of a bin's entries are connections`),
      el("span", {}, percent(top / 2)), el("span", {}, "> 0 (blank: none, structural zeros)"));
  }
  function matrixTip(event) {
    const tip = $("matrix-tip");
    if (!matrixData) { tip.hidden = true; return; }
    const canvas = $("matrix");
    const box = canvas.getBoundingClientRect();
    const col = Math.floor(((event.clientX - box.left) / box.width) * canvas.width);
    const row = Math.floor(((event.clientY - box.top) / box.height) * canvas.height);
    if (row < 0 || col < 0 || row >= canvas.height || col >= canvas.width) { tip.hidden = true; return; }
    tip.textContent = matrixData.mode === "exact" ? entryTip(row, col) : binTip(row, col);
    tip.hidden = false;
    tip.style.left = `${event.clientX - box.left + 16}px`;
    tip.style.top = `${event.clientY - box.top + 16}px`;
  }
  function entryTip(row, col) {
    const id = matrixData.ids[row][col];
    const where = `row ${row} = output ${cellText(unflat(row, matrixData.output_shape))}\ncolumn ${col} = input ${cellText(unflat(col, matrixData.input_shape))}`;
    if (id === matrixData.zero) return `${where}\nstructural zero`;
    const summed = matrixData.sums.find((sum) => sum[0] === row && sum[1] === col);
    const entry = (w) => (matrixData.weight_shape && matrixData.weight_shape.length ? `weight[${unflat(w, matrixData.weight_shape)}]` : `weight ${w}`);
    return `${where}\n${summed ? `${summed[2].map(entry).join(" + ")} (summed)` : matrixData.weights ? entry(id) : "a fixed coefficient (no weights)"}`;
  }
  function binTip(row, col) {
    const bins = matrixData.bins;
    const k = bins.at.get(row * (bins.col_edges.length - 1) + col);
    return `rows ${bins.row_edges[row]}…${bins.row_edges[row + 1] - 1}, columns ${bins.col_edges[col]}…${bins.col_edges[col + 1] - 1}\n`
      + (k === undefined ? "no connections" : `${count(bins.counts[k])} connections (${bins.fraction[k]} of the bin)`);
  }

  // ---- colours ------------------------------------------------------------------------------------------
  const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]]; // viridis stops
  function ramp(t) {
    const x = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
    const k = Math.min(RAMP.length - 2, Math.floor(x));
    const f = x - k;
    return RAMP[k].map((v, n) => Math.round(v + f * (RAMP[k + 1][n] - v)));
  }
  const cssColour = (rgb) => `rgb(${rgb.join(",")})`;
  const rampColour = (t) => cssColour(ramp(t));
  function tieColour(id) {
    // one colour per weight id (golden-angle hues: neighbouring ids differ); ids of weightless layers: grey
    if (!matrixData || !matrixData.weights) return [110, 118, 130];
    const h = (id * 137.508) % 360;
    const f = (n) => {
      const k = (n + h / 30) % 12;
      return Math.round(255 * (0.5 - 0.31 * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
    };
    return [f(0), f(8), f(4)];
  }
  const rgbaWord = ([r, g, b]) => ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0; // RGBA bytes, little-endian

  // ---- the stack view ---------------------------------------------------------------------------------
  async function drawStack() {
    const seq = ++state.seq;
    busy();
    try {
      const answer = state.model ? await api("/api/model", []) : await api("/api/view", stackParams());
      if (seq !== state.seq) return;
      if (!answer.ok) { showError(errorText(answer)); return; }
      if (state.model && answer.body.model === null) { showError(answer.body.reason); return; } // no --model
      clearError();
      const doc = state.model ? answer.body : answer.body.stack;
      renderStack(doc);
      $("rf-grids").hidden = !doc.layers.length;
      if (doc.layers.length) await drawField(seq, doc);
      else $("rf-note").textContent = "";
    } catch (err) {
      if (seq === state.seq) showError(`the page could not reach layerlab serve: ${err.message}`);
    } finally {
      done();
    }
  }
  // sizes after upsampling are fractions: 6 significant digits, as Python's "g"
  const fieldSize = (size) => size.map((v) => String(Number(v.toPrecision(6)))).join("×");
  const rfText = (rf) => (!rf ? "—" : rf.global ? "global" : fieldSize(rf.size) || "—");
  function renderStack(doc) {
    if (document.activeElement !== $("stack-layers")) $("stack-layers").value = state.model ? "" : state.layers.join("\n");
    if (document.activeElement !== $("stack-input")) $("stack-input").value = state.model ? shapeText(doc.input_shape) : state.input;
    $("model-note").hidden = !state.model;
    $("model-note").textContent = state.model ? `the table of the --model (${doc.model}); type layers here to explore a stack instead` : "";
    // a stack's document has output_shape (per sample); a model's summary output_shapes (with the batch)
    const outShape = doc.output_shape || doc.output_shapes[0].slice(1);
    setTestid("output-shape", shapeText(outShape));
    setTestid("params", count(doc.total.params));
    setTestid("macs", count(doc.total.macs));
    const table = $("stack-table");
    table.replaceChildren();
    const head = el("tr");
    for (const title of ["#", "layer", "output shape", "params", "MACs", "RF"]) head.append(el("th", title === "layer" ? { class: "layer" } : {}, title));
    table.append(el("thead"));
    table.firstChild.append(head);
    const body = el("tbody");
    doc.layers.forEach((layer, k) => {
      const tr = el("tr", { "data-row": String(k + 1) });
      const shape = layer.output_shape ? shapeText(layer.output_shape.slice(1)) : "—";
      tr.append(el("td", {}, String(k + 1)), el("td", { class: "layer" }, layer.text || layer.layer || `${layer.name} ${layer.type}`),
        el("td", {}, shape), el("td", {}, count(layer.params)), el("td", {}, count(layer.macs)), el("td", {}, rfText(layer.receptive_field)));
      body.append(tr);
    });
    table.append(body);
    const foot = el("tfoot");
    const total = el("tr");
    total.append(el("td"), el("td", { class: "layer" }, "total"), el("td", {}, shapeText(outShape)),
      el("td", {}, count(doc.total.params)), el("td", {}, count(doc.total.macs)), el("td"));
    foot.append(total);
    table.append(foot);
    const warnings = [];
    doc.layers.forEach((layer, k) => { for (const warning of layer.warnings || []) warnings.push(`layer ${k + 1}: ${warning}`); });
    fillList($("stack-warnings"), warnings);
  }

  // the receptive field of one output unit of the chosen layer, drawn on the input (/api/rf)
  async function drawField(seq, doc) {
    // by default the last layer whose units see part of the input (a global field covers it all)
    const local = doc.layers.map((layer, k) => k + 1).filter((k) => doc.layers[k - 1].receptive_field && !doc.layers[k - 1].receptive_field.global);
    const index = state.rfIndex >= 1 && state.rfIndex <= doc.layers.length ? state.rfIndex : local.length ? local[local.length - 1] : doc.layers.length;
    state.rfIndex = index;
    for (const tr of $("stack-table").querySelectorAll("tbody tr")) tr.classList.toggle("chosen", tr.dataset.row === String(index));
    const outShape = doc.layers[index - 1].output_shape.slice(1);
    const inShape = doc.input_shape;
    const spatialOut = outShape.length === inShape.length ? outShape.slice(1) : [];
    // the --model's rows answer from its summary document (model=1), a typed stack from its layers
    const params = [...(state.model ? [["model", "1"]] : stackParams()), ["index", String(index)]];
    if (state.rfCell && state.rfCell.split(",").length === spatialOut.length) params.push(["out", state.rfCell]);
    const answer = await api("/api/rf", params);
    if (seq !== state.seq) return;
    if (!answer.ok) {
      $("rf-note").textContent = errorText(answer);
      $("rf-in").replaceChildren();
      $("rf-out").replaceChildren();
      return;
    }
    const rf = answer.body;
    state.rfCell = rf.out;
    writeUrl();
    const inGrid = spatialGrid($("rf-in"), inShape.slice(1), "rf-in-cell");
    const outGrid = spatialGrid($("rf-out"), spatialOut, "rf-out-cell");
    const inside = (pos) => pos.split(",").every((v, d) => rf.box[d][0] <= +v && +v <= rf.box[d][1]);
    for (const [pos, cell] of inGrid) cell.classList.toggle("rf", inside(pos));
    for (const [pos, cell] of outGrid) cell.classList.toggle("chosen", pos === rf.out);
    const where = rf.global ? "every input cell (global)" : `rows/columns ${rf.box.map(([a, b]) => `${a}…${b}`).join(" × ")} of the input`;
    $("rf-note").textContent = `layer ${rf.index} ${rf.layer}${rf.out ? `, output ${cellText(rf.out)}` : ""}: size ${fieldSize(rf.size) || "—"}, `
      + `sees ${where}${rf.exact ? "" : " (fractional: cells partly inside are lit)"}${rf.warnings.length ? ` · ${rf.warnings.join(" ")}` : ""}`;
  }
  function spatialGrid(container, spatial, testid) {
    // one grid of spatial positions ("i,j" or "i"), rebuilt only when its shape changes
    const key = `${testid}:${spatial.join("x")}`;
    if (container.dataset.key !== key) {
      container.dataset.key = key;
      if (!spatial.length || spatial.reduce((a, b) => a * b, 1) > 16384) {
        container.innerHTML = `<div class="more">${spatial.length ? shapeText(spatial) : "flat features"}: no spatial grid to draw</div>`;
      } else {
        const rows = spatial.length === 2 ? spatial[0] : 1;
        const cols = spatial[spatial.length - 1];
        let html = "";
        for (let i = 0; i < rows; i += 1) {
          for (let j = 0; j < cols; j += 1) html += `<i data-testid="${testid}" data-pos="${spatial.length === 2 ? `${i},${j}` : j}"></i>`;
        }
        container.innerHTML = `<div class="grid" style="${gridBox(cols, rows, cellSize(cols))}">${html}</div>`;
      }
      container._cells = null;
    }
    return cellsOf(container);
  }

  // ---- events ------------------------------------------------------------------------------------------
  function onControlChange() {
    state.input = inputFromControls();
    state.layers = [layerFromControls()];
    drawLayer(true);
  }
  function onStackChange() {
    state.rfIndex = -1;
    state.rfCell = null;
    state.input = $("stack-input").value.trim();
    state.layers = $("stack-layers").value.split("\n").map((line) => line.trim()).filter(Boolean);
    writeUrl();
    drawStack();
  }
  function showView(view) {
    state.view = view;
    for (const node of document.querySelectorAll("[data-view]")) {
      if (node.tagName === "BUTTON") node.setAttribute("aria-selected", String(node.dataset.view === view));
      else node.hidden = node.dataset.view !== view;
    }
  }
  function switchView(view) {
    if (view === state.view) return;
    if (view === "layer" && !isSingleLayer()) {
      state.model = false;
      state.input = DEFAULT.input;
      state.layers = [...DEFAULT.layers];
    }
    showView(view);
    writeUrl();
    redraw();
  }
  const redraw = () => (state.view === "layer" ? drawLayer(false) : drawStack());

  function wire() {
    $("controls").addEventListener("input", (event) => {
      if (event.target.id === "layer-string") {
        // a typed layer string: the engine parses it, and the form follows its answer
        state.layers = [event.target.value.trim()];
        drawLayer(false);
        return;
      }
      if (event.target.id === "kind") showControlsFor($("kind").value);
      if (event.target.id === "groups-slider") $("arg-groups").value = event.target.value === "1" ? "" : event.target.value;
      else syncGroupsSlider();
      onControlChange();
    });
    $("depthwise").addEventListener("click", depthwise);
    $("stack-controls").addEventListener("input", () => { state.model = false; onStackChange(); });
    for (const button of document.querySelectorAll(".tabs button")) button.addEventListener("click", () => switchView(button.dataset.view));
    for (const [id, side] of [["in-grid", "in"], ["out-grid", "out"]]) {
      $(id).addEventListener("mouseover", (event) => {
        const data = event.target.dataset;
        if (data && data.testid === `${side}-cell`) hoverCell(side, data.pos);
      });
      $(id).addEventListener("mousemove", (event) => { // a canvas map: the cell under the mouse
        const map = $(id)._map;
        if (!map || event.target !== $(id)._canvas) return;
        const pos = mapCell($(id), event);
        if (pos !== null && pos !== map.pointer) hoverCell(side, pos);
        map.pointer = pos;
      });
      $(id).addEventListener("mouseleave", () => {
        if ($(id)._map) $(id)._map.pointer = null;
        leaveGrids();
      });
    }
    $("matrix").addEventListener("mousemove", matrixTip);
    $("matrix").addEventListener("mouseleave", () => { $("matrix-tip").hidden = true; });
    $("stack-table").addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-row]");
      if (!row) return;
      state.rfIndex = Number(row.dataset.row);
      state.rfCell = null;
      drawStack();
    });
    $("rf-out").addEventListener("click", (event) => {
      const pos = event.target.dataset && event.target.dataset.pos;
      if (pos === undefined) return;
      state.rfCell = pos;
      drawStack();
    });
  }

  async function start() {
    wire();
    readUrl();
    if (!location.search) {
      // a server started with --model opens on the model
      busy();
      try {
        const model = await api("/api/model", []);
        if (model.ok && model.body.model !== null) { state.model = true; state.view = "stack"; }
      } finally {
        done();
      }
    }
    showView(state.view);
    if (state.view === "layer") showControlsFor(kindOf(state.layers[0]));
    redraw();
  }
  start();
})();
