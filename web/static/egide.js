/* The Égide lab page: reads the generated forms, talks to /api/v1, polls jobs. No framework. */
(function () {
  "use strict";
  var API = document.body.dataset.api;
  var $ = function (id) { return document.getElementById(id); };

  function token() {
    var input = $("token");
    if (input && input.value) { sessionStorage.setItem("egide-token", input.value); }
    return sessionStorage.getItem("egide-token") || "";
  }
  if ($("token")) { $("token").value = sessionStorage.getItem("egide-token") || ""; }

  function call(method, path, body) {
    var headers = {"Accept": "application/json"};
    if (body !== undefined) { headers["Content-Type"] = "application/json"; }
    if (token()) { headers["Authorization"] = "Bearer " + token(); }
    return fetch(path.indexOf(API) === 0 ? path : API + path, {
      method: method, headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (doc) {
        return {status: r.status, ok: r.ok, doc: doc};
      });
    });
  }

  function blobUrl(path) {  // artifacts through fetch, so a token can go along
    var headers = token() ? {"Authorization": "Bearer " + token()} : {};
    return fetch(path, {headers: headers}).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.blob();
    }).then(function (b) { return URL.createObjectURL(b); });
  }

  function pct(v) { return v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%"; }
  function num(v) { return v === null || v === undefined ? "–" : Number(v).toPrecision(3); }

  function showError(el, text) {
    if (!el) { return; }
    el.textContent = text || ""; el.hidden = !text;
  }

  function clearErrors(form) {
    form.querySelectorAll(".error[role=alert]").forEach(function (e) { showError(e, ""); });
    form.querySelectorAll("[aria-invalid]").forEach(function (e) { e.removeAttribute("aria-invalid"); });
  }

  /* Show each error of a 422 problem at its field; what matches no field goes to `fallback`. */
  function showProblem(form, doc, fieldFor, fallback) {
    var rest = [];
    (doc.errors || []).forEach(function (err) {
      var target = fieldFor(err.loc || []);
      if (target) {
        var box = target.closest(".field");
        showError(box.querySelector(".error"), err.msg);
        var input = box.querySelector("input, select");
        if (input) { input.setAttribute("aria-invalid", "true"); }
      } else {
        rest.push((err.field ? err.field + ": " : "") + err.msg);
      }
    });
    if (!doc.errors || rest.length) {
      showError(fallback, rest.length ? rest.join("; ") : (doc.detail || doc.title || "request failed"));
    }
  }

  // ---- data set splits: the chosen data set's own (the test split when it has one) ---------
  function fillSplits() {
    var opt = $("data").selectedOptions[0], split = $("split");
    var splits = opt && opt.dataset.splits ? opt.dataset.splits.split(",") : [];
    split.textContent = "";
    if (!splits.length) { splits = [""]; }
    splits.forEach(function (name) {
      var o = document.createElement("option");
      o.value = name; o.textContent = name || "(all images)";
      o.selected = name === "test"; split.appendChild(o);
    });
  }
  $("data").addEventListener("change", fillSplits);
  fillSplits();
  function chosenSplit() { return $("split").value || null; }

  // ---- attack form: one generated fieldset per attack, the chosen one enabled -------------
  var attackSelect = $("attack");
  function currentFieldset() { return document.querySelector("fieldset.params:not([hidden])"); }
  function switchAttack() {
    document.querySelectorAll("fieldset.params").forEach(function (fs) {
      var on = fs.dataset.attack === attackSelect.value;
      fs.hidden = !on; fs.disabled = !on;
    });
  }
  attackSelect.addEventListener("change", switchAttack);
  switchAttack();

  document.querySelectorAll("input[type=range][data-mirror]").forEach(function (range) {
    var box = $(range.dataset.mirror);
    range.addEventListener("input", function () { box.value = range.value; });
    box.addEventListener("input", function () { range.value = box.value; });
  });

  function readParams(fs) {
    var params = {};
    fs.querySelectorAll(".field[data-param]").forEach(function (box) {
      var name = box.dataset.param, widget = box.dataset.widget;
      var input = box.querySelector("[name='" + name + "']");
      if (widget === "checkbox") { params[name] = input.checked; return; }
      var raw = input.value.trim();
      if (raw === "") {
        if (box.dataset.optional === "true") { params[name] = null; }
        return;  // empty: the plugin's default applies (or the server names the missing field)
      }
      if (widget === "number" || widget === "integer") {
        var n = Number(raw);
        params[name] = isNaN(n) ? raw : n;  // a non-number goes as text: the server explains
      } else { params[name] = raw; }
    });
    return params;
  }

  // ---- jobs ---------------------------------------------------------------------------------
  function watch(prefix, jobUrl, onDone) {
    var box = $(prefix + "-job"), bar = $(prefix + "-progress");
    box.hidden = false; $(prefix + "-result").hidden = true;
    function tick() {
      call("GET", jobUrl).then(function (r) {
        var job = r.doc, p = job.progress || {};
        $(prefix + "-state").textContent = job.state || "error";
        $(prefix + "-state").className = "state " + (job.state || "failed");
        $(prefix + "-label").textContent = job.error || (p.total ? p.done + " / " + p.total + " images" + (p.label && job.state === "running" ? " · " + p.label : "") : "");
        bar.value = job.state === "done" ? 1 : (p.fraction || 0);
        if (job.state === "queued" || job.state === "running") { setTimeout(tick, 400); return; }
        if (job.state === "done") { onDone(job); }
        finished(prefix);
      });
    }
    tick();
  }

  function finished(prefix) {
    var run = $(prefix + "-run"); run.disabled = false;
    var cancel = $(prefix + "-cancel"); if (cancel) { cancel.hidden = true; }
  }

  function metric(dl, name, value) {
    var box = document.createElement("div"), dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = name; dd.textContent = value; box.appendChild(dt); box.appendChild(dd); dl.appendChild(box);
  }

  var attackJobUrl = null;
  $("attack-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var form = ev.target; clearErrors(form);
    var fs = currentFieldset();
    var limitRaw = $("attack-limit").value.trim();
    var body = {
      kind: "attack", plugin: attackSelect.value, params: readParams(fs),
      model: $("model").value, data: $("data").value, split: chosenSplit(),
      limit: limitRaw === "" ? null : Number(limitRaw)
    };
    $("attack-run").disabled = true;
    call("POST", "/jobs", body).then(function (r) {
      if (!r.ok) {
        finished("attack");
        showProblem(form, r.doc, function (loc) {
          if (loc[0] === "params" && loc.length > 1) { return fs.querySelector(".field[data-param='" + loc[1] + "']"); }
          if (loc[0] === "limit") { return $("attack-limit"); }
          return null;
        }, $("attack-error"));
        return;
      }
      attackJobUrl = r.doc.url; $("attack-cancel").hidden = false;
      watch("attack", r.doc.url, showAttack);
    });
  });
  $("attack-cancel").addEventListener("click", function () {
    if (attackJobUrl) { call("DELETE", attackJobUrl); }
  });

  function showAttack(job) {
    var s = job.result, dl = $("attack-metrics"); dl.textContent = "";
    metric(dl, "Clean accuracy", pct(s.clean_accuracy));
    metric(dl, "Robust accuracy", pct(s.robust_accuracy));
    metric(dl, "Success rate", pct(s.success_rate));
    metric(dl, "Mean L2", num(s.l2_mean));
    metric(dl, "Max L∞", num(s.linf_max));
    metric(dl, "Time", s.seconds.toFixed(2) + " s");
    var gallery = $("attack-gallery"); gallery.textContent = "";
    s.examples.forEach(function (ex) {
      var fig = document.createElement("figure");
      fig.className = ex.success ? "pair broken" : "pair held";
      [["clean", ex.clean, ex.clean_pred], ["adversarial", ex.adversarial, ex.adv_pred]].forEach(function (it) {
        var cell = document.createElement("div"), img = document.createElement("img"), cap = document.createElement("span");
        img.alt = it[0] + " image " + ex.index + " (true " + ex.label + "), predicted " + it[2];
        img.width = 112; img.height = 112;
        blobUrl(job.artifacts[it[1]]).then(function (u) { img.src = u; });
        cap.textContent = it[0] === "clean" ? "clean → " + it[2] : "adv. → " + it[2];
        cap.className = it[0] === "adversarial" && it[2] !== ex.label ? "pred wrong" : "pred";
        cell.appendChild(img); cell.appendChild(cap); fig.appendChild(cell);
      });
      var fc = document.createElement("figcaption");
      fc.textContent = "#" + ex.index + " · true: " + ex.label;
      fig.appendChild(fc); gallery.appendChild(fig);
    });
    blobUrl(job.artifacts["adversarial.npz"]).then(function (u) { $("attack-npz").href = u; });
    $("attack-result").hidden = false;
  }

  // ---- evaluation ---------------------------------------------------------------------------
  function parseEps(text) {
    return text.split(/[\s,;]+/).filter(Boolean).map(function (t) {
      var parts = t.split("/");
      return parts.length === 2 ? Number(parts[0]) / Number(parts[1]) : Number(t);
    });
  }

  $("eval-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var form = ev.target; clearErrors(form);
    var attacks = Array.prototype.map.call(form.querySelectorAll("input[name=attacks]:checked"), function (c) {
      return {plugin: c.value};
    });
    var eps = parseEps($("eval-eps").value);
    if (eps.some(isNaN)) { showError($("eval-eps-error"), "give numbers or fractions like 4/255, separated by commas"); return; }
    var limitRaw = $("eval-limit").value.trim();
    var config = {model: $("model").value, data: $("data").value, split: chosenSplit(), attacks: attacks, eps: eps,
                  limit: limitRaw === "" ? null : Number(limitRaw)};
    $("eval-run").disabled = true;
    call("POST", "/jobs", {kind: "evaluate", config: config}).then(function (r) {
      if (!r.ok) {
        finished("eval");
        showProblem(form, r.doc, function (loc) {
          if (loc[1] === "eps") { return $("eval-eps"); }
          if (loc[1] === "limit") { return $("eval-limit"); }
          return null;
        }, $("eval-error"));
        return;
      }
      watch("eval", r.doc.url, showEvaluation);
    });
  });

  function showEvaluation(job) {
    var s = job.result, dl = $("eval-metrics"); dl.textContent = "";
    metric(dl, "Clean accuracy", pct(s.clean_accuracy));
    Object.keys(s.worst_case_robust_accuracy || {}).forEach(function (k) {
      metric(dl, "Worst case at " + k, pct(s.worst_case_robust_accuracy[k]));
    });
    var flagged = (s.sanity_checks || []).filter(function (c) { return !c.passed; }).length;
    metric(dl, "Sanity checks", flagged ? flagged + " flagged" : "all passed");
    metric(dl, "Images", String(s.images));
    metric(dl, "Time", s.seconds.toFixed(1) + " s");
    blobUrl(job.artifacts["report.html"]).then(function (u) { $("eval-report").href = u; });
    blobUrl(job.artifacts["report.json"]).then(function (u) { $("eval-json").href = u; });
    $("eval-result").hidden = false;
  }
  // ---- upload a scan: POST /predict (multipart), then the class and a bar per confidence ----
  $("scan-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var form = ev.target, file = $("scan-file").files[0];
    clearErrors(form);
    if (!file) {
      showError($("scan-file-error"), "choose an image first");
      $("scan-file").setAttribute("aria-invalid", "true");
      return;
    }
    var body = new FormData();
    body.append("image", file, file.name);
    body.append("model", $("scan-model").value);
    var headers = {"Accept": "application/json"};
    if (token()) { headers["Authorization"] = "Bearer " + token(); }
    $("scan-run").disabled = true;
    fetch(API + "/predict", {method: "POST", headers: headers, body: body}).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (doc) {
        $("scan-run").disabled = false;
        if (!r.ok) {
          $("scan-result").hidden = true;
          showProblem(form, doc, function (loc) {
            if (loc[0] === "image") { return $("scan-file"); }
            if (loc[0] === "model") { return $("scan-model"); }
            return null;
          }, $("scan-error"));
          return;
        }
        showPrediction(doc, file);
      });
    }).catch(function (e) {
      $("scan-run").disabled = false;
      showError($("scan-error"), "the server did not answer: " + e.message);
    });
  });

  function showPrediction(doc, file) {
    var p = doc.predictions[0], bars = $("scan-bars");
    $("scan-class").textContent = p.class_name;
    $("scan-confidence").textContent = pct(p.confidences[p.class_name]);
    var shape = doc.input_shape;
    $("scan-resized").textContent = p.resized
      ? "Resized from " + p.resized_from.join("×") + " to " + shape[0] + "×" + shape[1] + " for " + doc.model
      : "Classified at " + shape[0] + "×" + shape[1] + " by " + doc.model;
    bars.textContent = "";
    doc.class_names.forEach(function (name) {
      var v = p.confidences[name], li = document.createElement("li");
      li.dataset.class = name;
      if (name === p.class_name) { li.className = "top"; }
      var label = document.createElement("span"); label.textContent = name;
      var bar = document.createElement("span"); bar.className = "bar";
      bar.setAttribute("role", "meter"); bar.setAttribute("aria-label", name);
      bar.setAttribute("aria-valuemin", "0"); bar.setAttribute("aria-valuemax", "1");
      bar.setAttribute("aria-valuenow", String(v));
      var fill = document.createElement("span"); fill.style.width = (100 * v).toFixed(1) + "%";
      bar.appendChild(fill);
      var value = document.createElement("span"); value.textContent = pct(v);
      li.appendChild(label); li.appendChild(bar); li.appendChild(value);
      bars.appendChild(li);
    });
    var img = $("scan-preview");
    if (/\.npy$/i.test(file.name)) { img.hidden = true; } else {
      if (img.src) { URL.revokeObjectURL(img.src); }
      img.src = URL.createObjectURL(file); img.hidden = false;
    }
    $("scan-result").hidden = false;
  }
})();
