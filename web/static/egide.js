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
    var fit = $("eval-fit-split");
    if (fit) {
      fit.textContent = "";
      var auto = document.createElement("option");
      auto.value = ""; auto.textContent = "automatic: the val split, else held out of the evaluated split";
      fit.appendChild(auto);
      splits.filter(Boolean).forEach(function (name) {
        var o = document.createElement("option"); o.value = name; o.textContent = name; fit.appendChild(o);
      });
    }
  }
  $("data").addEventListener("change", fillSplits);
  fillSplits();
  function chosenSplit() { return $("split").value || null; }

  // ---- generated forms: one fieldset per plugin, the one its <select data-picks> names enabled --
  function chosenFieldset(group) {
    var sel = document.querySelector("select[data-picks='" + group + "']");
    if (!sel || !sel.value) { return null; }
    return document.querySelector("fieldset[data-group='" + group + "'][data-plugin='" + sel.value + "']");
  }
  document.querySelectorAll("select[data-picks]").forEach(function (sel) {
    var group = sel.dataset.picks;
    function sync() {
      document.querySelectorAll("fieldset[data-group='" + group + "']").forEach(function (fs) {
        var on = fs.dataset.plugin === sel.value;
        fs.hidden = !on; fs.disabled = !on;
      });
      if (group === "defense") { $("adaptive-field").hidden = !sel.value; }
    }
    sel.addEventListener("change", sync);
    sync();
  });
  var attackSelect = $("attack");
  function currentFieldset() { return chosenFieldset("attack"); }

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
      if (widget === "number" || widget === "integer" || widget === "budget") {
        var n = Number(raw);
        // A budget may be a fraction ("4/255"): it goes as text, and the server reads it.
        params[name] = isNaN(n) ? raw : n;  // a non-number goes as text: the server explains
      } else { params[name] = raw; }
    });
    return params;
  }

  // ---- jobs ---------------------------------------------------------------------------------
  function watch(prefix, jobUrl, onDone, unit) {
    var box = $(prefix + "-job"), bar = $(prefix + "-progress");
    box.hidden = false; $(prefix + "-result").hidden = true;
    function tick() {
      call("GET", jobUrl).then(function (r) {
        var job = r.doc, p = job.progress || {};
        $(prefix + "-state").textContent = job.state || "error";
        $(prefix + "-state").className = "state " + (job.state || "failed");
        $(prefix + "-label").textContent = job.error || (p.total ? p.done + " / " + p.total + " " + (unit || "images") + (p.label && job.state === "running" ? " · " + p.label : "") : "");
        bar.value = job.state === "done" ? 1 : (p.fraction || 0);
        if (job.state === "queued" || job.state === "running") { setTimeout(tick, 400); return; }
        if (job.state === "done") { onDone(job); }
        finished(prefix);
        listJobs();
      });
    }
    tick();
  }

  function finished(prefix) {
    var run = $(prefix + "-run"); if (run) { run.disabled = false; }
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
    var defenseFs = chosenFieldset("defense");
    if (defenseFs) {
      body.defense = {plugin: $("defense").value, params: readParams(defenseFs), adaptive: $("defense-adaptive").checked};
    }
    $("attack-run").disabled = true;
    call("POST", "/jobs", body).then(function (r) {
      if (!r.ok) {
        finished("attack");
        showProblem(form, r.doc, function (loc) {
          if (loc[0] === "params" && loc.length > 1) { return fs.querySelector(".field[data-param='" + loc[1] + "']"); }
          if (loc[0] === "limit") { return $("attack-limit"); }
          if (loc[0] === "defense" && loc[1] === "params" && loc.length > 2 && defenseFs) {
            return defenseFs.querySelector(".field[data-param='" + loc[2] + "']");
          }
          if (loc[0] === "defense") { return $("defense"); }
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
    var correct = s.images - s.already_misclassified;
    metric(dl, "Success rate", pct(s.success_rate) + " of " + correct + " classified right before");
    if (s.already_misclassified) { metric(dl, "Already misclassified", s.already_misclassified + " (not attacked successes)"); }
    metric(dl, "Mean L2", num(s.l2_mean));
    metric(dl, "Max L∞", num(s.linf_max));
    metric(dl, "Time", s.seconds.toFixed(2) + " s");
    if (s.defense) {
      metric(dl, "Defense", s.defense.plugin + (s.defense.adaptive ? " (adaptive attack)" : " (non-adaptive attack)"));
    }
    var gallery = $("attack-gallery"); gallery.textContent = "";
    s.examples.forEach(function (ex) {
      var fig = document.createElement("figure");
      var wrongBefore = ex.clean_pred !== ex.label;
      fig.className = wrongBefore ? "triple misclassified" : ex.success ? "triple broken" : "triple held";
      var cells = [
        ["clean", ex.clean, "clean → " + ex.clean_pred + " " + pct(ex.clean_confidence),
         "Clean image " + ex.index + " (true " + ex.label + "), predicted " + ex.clean_pred + " at " + pct(ex.clean_confidence)],
        ["adversarial", ex.adversarial, "adv. → " + ex.adv_pred + " " + pct(ex.adv_confidence),
         "Adversarial image " + ex.index + ", predicted " + ex.adv_pred + " at " + pct(ex.adv_confidence)],
        ["perturbation", ex.perturbation, "perturbation ±" + num(ex.perturbation_scale),
         "Perturbation of image " + ex.index + ", stretched from ±" + num(ex.perturbation_scale) + " to the full grey range"]
      ];
      cells.forEach(function (it) {
        var cell = document.createElement("div"), img = document.createElement("img"), cap = document.createElement("span");
        img.alt = it[3]; img.width = 80; img.height = 80; img.dataset.role = it[0];
        blobUrl(job.artifacts[it[1]]).then(function (u) { img.src = u; });
        img.addEventListener("load", function () {  // a volume's mid-slices, side by side: a row each
          if (img.naturalWidth > 2 * img.naturalHeight) { fig.classList.add("volumes"); }
        });
        cap.textContent = it[2];
        cap.className = it[0] === "adversarial" && ex.adv_pred !== ex.label ? "pred wrong" : "pred";
        cell.appendChild(img); cell.appendChild(cap); fig.appendChild(cell);
      });
      var worst = ex.most_perturbed_slice;  // a volume: the axial slice the attack changed most
      if (worst) {
        var note = document.createElement("p");
        note.className = "slice-note";
        note.textContent = "Axial slice " + worst.slice + " of " + worst.depth + ", the one the attack changed most:";
        var row = document.createElement("div");
        row.className = "slice-row";
        ["clean", "adversarial", "perturbation"].forEach(function (role) {
          var img = document.createElement("img");
          img.alt = role + " of image " + ex.index + ", axial slice " + worst.slice;
          img.width = 80; img.height = 80; img.dataset.role = role + "-slice";
          blobUrl(job.artifacts[worst[role]]).then(function (u) { img.src = u; });
          row.appendChild(img);
        });
        fig.appendChild(note); fig.appendChild(row);
      }
      var fc = document.createElement("figcaption");
      fc.textContent = "#" + ex.index + " · true: " + ex.label + (wrongBefore
        ? " · already misclassified before the attack (not counted as a success)"
        : ex.success ? " · attack succeeded" : " · held");
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

  $("eval-norm").addEventListener("change", function () {
    // Each norm's budgets are in its own unit: show its defaults rather than keep L-inf fractions.
    $("eval-eps").value = $("eval-norm").selectedOptions[0].dataset.eps;
  });

  $("eval-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var form = ev.target; clearErrors(form);
    var attacks = Array.prototype.map.call(form.querySelectorAll("input[name=attacks]:checked"), function (c) {
      return {plugin: c.value};
    });
    if (!attacks.length) {
      showError($("eval-attacks-error"), "tick at least one attack");
      return;
    }
    var eps = parseEps($("eval-eps").value);
    if (eps.some(isNaN)) { showError($("eval-eps-error"), "give numbers or fractions like 4/255, separated by commas"); return; }
    var limitRaw = $("eval-limit").value.trim();
    var config = {model: $("model").value, data: $("data").value, split: chosenSplit(), attacks: attacks, eps: eps,
                  norm: $("eval-norm").value, limit: limitRaw === "" ? null : Number(limitRaw)};
    if ($("eval-suite") && $("eval-suite").value) { config.suite = $("eval-suite").value; }
    if ($("eval-adaptive")) { config.adaptive_detectors = $("eval-adaptive").checked; }
    if ($("eval-fit-split") && $("eval-fit-split").value) { config.detector_fit_split = $("eval-fit-split").value; }
    if ($("eval-negative").value.trim()) { config.negative_class = $("eval-negative").value.trim(); }
    ["defenses", "detectors"].forEach(function (group) {
      config[group] = Array.prototype.map.call(form.querySelectorAll("input[name=" + group + "]:checked"), function (c) {
        return {plugin: c.value};
      });
    });
    $("eval-run").disabled = true;
    call("POST", "/jobs", {kind: "evaluate", config: config}).then(function (r) {
      if (!r.ok) {
        finished("eval");
        showProblem(form, r.doc, function (loc) {
          if (loc[1] === "eps" || loc[1] === "norm") { return $("eval-eps"); }
          if (loc[1] === "limit") { return $("eval-limit"); }
          if (loc[1] === "negative_class") { return $("eval-negative"); }
          if (loc[1] === "attacks") { return $("eval-attacks-error"); }
          if (loc[1] === "detector_fit_split" && $("eval-fit-split")) { return $("eval-fit-split"); }
          if (loc[1] === "detectors" && $("eval-detectors-error")) { return $("eval-detectors-error"); }
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
    if (s.suite) {
      s.suite.runs.forEach(function (r) {
        metric(dl, "Suite " + s.suite.ran + " at " + r.eps_text, pct(r.robust_accuracy));
        if (r.gradient_masking) {
          metric(dl, "Gradient masking at " + r.eps_text, r.gradient_masking);
          dl.lastChild.classList.add("flagged");
        }
      });
    }
    var checks = s.sanity_checks || [];
    var count = function (state) { return checks.filter(function (c) { return c.state === state; }).length; };
    var parts = [count("passed") + " passed"];
    if (count("failed")) { parts.push(count("failed") + " flagged"); }
    if (count("not applicable")) { parts.push(count("not applicable") + " not applicable"); }
    metric(dl, "Sanity checks", checks.length ? parts.join(", ") : "not run");
    if (count("failed")) { dl.lastChild.classList.add("flagged"); }
    checks.forEach(function (c) {
      if (c.state !== "passed") { metric(dl, c.name + " (" + (c.state === "failed" ? "FLAG" : "n/a") + ")", c.message); }
    });
    if (s.subset) { metric(dl, "Images drawn", s.subset.text); }
    if (s.subset && s.subset.warning) { metric(dl, "Not every class evaluated", s.subset.warning); dl.lastChild.classList.add("flagged"); }
    if (s.detector_fit) { metric(dl, "Detectors fitted on", s.detector_fit); }
    (s.defenses || []).forEach(function (d) {
      var keys = Object.keys(d.worst_case_robust_accuracy || {}), last = keys[keys.length - 1];
      if (last) { metric(dl, d.plugin + " at " + last + " (adaptive)", pct(d.worst_case_robust_accuracy[last].adaptive)); }
    });
    (s.detectors || []).forEach(function (d) {
      if (!d.guard) { return; }
      d.guard.forEach(function (g) {
        metric(dl, d.plugin + " guarded at " + g.eps_text + " (adaptive / non-adaptive)",
               pct(g.adaptive) + " / " + pct(g.non_adaptive) +
               (g.threshold_fails ? " — meaningless: " + g.threshold_fails : g.falls ? " — falls to adaptive attack" : ""));
        if (g.falls || g.threshold_fails) { dl.lastChild.classList.add("flagged"); }
      });
    });
    metric(dl, "Images", String(s.images));
    metric(dl, "Time", s.seconds.toFixed(1) + " s");
    var rocs = $("eval-rocs"); rocs.textContent = "";
    (s.detectors || []).forEach(function (d) {
      var name = "roc-" + d.plugin + ".png";
      if (!job.artifacts[name]) { return; }
      var img = document.createElement("img");
      img.alt = "ROC curves of the " + d.plugin + " detector, one per attack";
      img.dataset.detector = d.plugin;
      blobUrl(job.artifacts[name]).then(function (u) { img.src = u; });
      rocs.appendChild(img);
    });
    if (job.artifacts["robustness.png"]) {
      blobUrl(job.artifacts["robustness.png"]).then(function (u) { $("eval-plot").src = u; $("eval-figure").hidden = false; });
    } else { $("eval-figure").hidden = true; }
    reportLink($("eval-report"), job);
    reportLink($("eval-card"), job, "card");
    reportLink($("eval-card-pdf"), job, "card_pdf");
    blobUrl(job.artifacts["report.json"]).then(function (u) { $("eval-json").href = u; });
    $("eval-result").hidden = false;
  }
  /* A report is served by the server at a URL that lasts as long as the job: link to it. With a
     token the browser cannot send it on a plain link, so the report opens from a fetched copy. */
  function reportLink(a, job, which) {
    var url = job.links && job.links[which || "report"];
    if (!url) { return; }
    if (document.body.dataset.tokenRequired === "true") {
      a.href = "#"; a.onclick = function (ev) {
        ev.preventDefault(); blobUrl(url).then(function (u) { window.open(u, "_blank", "noopener"); });
      };
    } else { a.href = url; a.onclick = null; }
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
    if ($("scan-reference").value) { body.append("reference_data", $("scan-reference").value); }
    var detectorFs = chosenFieldset("detector");
    if (detectorFs) {
      body.append("detector", $("scan-detector").value);
      body.append("detector_params", JSON.stringify(readParams(detectorFs)));
    }
    var headers = {"Accept": "application/json"};
    if (token()) { headers["Authorization"] = "Bearer " + token(); }
    $("scan-run").disabled = true;
    $("scan-status").textContent = "Classifying…";
    function send() {
    fetch(API + "/predict", {method: "POST", headers: headers, body: body}).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (doc) {
        if (r.status === 503 && /detector-fitting$/.test(doc.type || "")) {
          // The server fits the detector in the background: ask again when it says to.
          var wait = Number(r.headers.get("Retry-After")) || 5;
          $("scan-status").textContent = "Fitting the detector to the model (" + Math.round(doc.fitting_seconds || 0) +
            " s so far, the first time only)… asking again in " + wait + " s";
          setTimeout(send, wait * 1000);
          return;
        }
        $("scan-run").disabled = false;
        $("scan-status").textContent = "";
        if (!r.ok) {
          $("scan-result").hidden = true;
          showProblem(form, doc, function (loc) {
            if (loc[0] === "image") { return $("scan-file"); }
            if (loc[0] === "model") { return $("scan-model"); }
            if (loc[0] === "detector_params" && loc.length > 1 && detectorFs) {
              return detectorFs.querySelector(".field[data-param='" + loc[1] + "']");
            }
            if (loc[0] === "reference_data") { return $("scan-reference"); }
            if (loc[0] === "detector" || loc[0] === "detector_params") { return $("scan-detector"); }
            return null;
          }, $("scan-error"));
          return;
        }
        showPrediction(doc, file);
      });
    }).catch(function (e) {
      $("scan-run").disabled = false;
      $("scan-status").textContent = "";
      showError($("scan-error"), "the server did not answer: " + e.message);
    });
    }
    send();
  });

  function showPrediction(doc, file) {
    var p = doc.predictions[0], bars = $("scan-bars");
    $("scan-class").textContent = p.class_name;
    $("scan-confidence").textContent = pct(p.confidences[p.class_name]);
    var grid = doc.input_shape.slice(0, -1).join("×");  // H×W, or D×H×W for a model of volumes
    $("scan-resized").textContent = p.resized
      ? "Resized from " + p.resized_from.join("×") + " to " + grid + " for " + doc.model
      : "Classified at " + grid + " by " + doc.model;
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
    var ood = $("scan-ood"), info = doc.out_of_distribution || {};
    if (info.checked && p.out_of_distribution) {
      ood.textContent = "Warning: this image looks unlike the scans of " + info.reference.data +
        " (distance " + num(p.ood_distance) + " > threshold " + num(info.threshold) +
        "): the prediction may mean nothing. " + info.method + ".";
      ood.className = "verdict ood flagged"; ood.hidden = false;
    } else if (!info.checked && info.why) {
      ood.textContent = "Not compared with the model's data: " + info.why + ".";
      ood.className = "verdict ood"; ood.hidden = false;
    } else { ood.hidden = true; }
    var verdict = $("scan-verdict");
    if (doc.detector) {
      verdict.textContent = "";
      var strong = document.createElement("strong");
      strong.textContent = p.flagged ? "Flagged as likely adversarial" : "Not flagged";
      verdict.className = "verdict detector " + (p.flagged ? "flagged" : "clear");
      verdict.appendChild(strong);
      verdict.appendChild(document.createTextNode(" by " + doc.detector.plugin + ": score " + num(p.adversarial_score) +
        ", threshold " + num(doc.detector.threshold) + " (" + pct(doc.detector.fpr) + " false positives on clean scans)"));
      verdict.hidden = false;
    } else { verdict.hidden = true; }
    var img = $("scan-preview");
    if (/\.(npy|dcm|dicom|nii|nii\.gz)$/i.test(file.name)) { img.hidden = true; } else {  // not browser images
      if (img.src) { URL.revokeObjectURL(img.src); }
      img.src = URL.createObjectURL(file); img.hidden = false;
    }
    $("scan-result").hidden = false;
  }

  // ---- your own model or scans: multipart uploads; what comes back joins the lists, chosen ---
  function upload(path, form) {
    var headers = {"Accept": "application/json"};
    if (token()) { headers["Authorization"] = "Bearer " + token(); }
    return fetch(API + path, {method: "POST", headers: headers, body: new FormData(form)}).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (doc) {
        return {status: r.status, ok: r.ok, doc: doc};
      });
    });
  }

  function addOption(sel, value, title, splits) {
    var o = sel.querySelector("option[value='" + value + "']");
    if (!o) { o = document.createElement("option"); sel.appendChild(o); }
    o.value = value; o.textContent = title; o.title = value;
    if (splits !== undefined) { o.dataset.splits = splits.join(","); }
  }

  function uploadForm(kind, path, fields, added) {
    var form = $(kind + "-upload"), button = $(kind + "-upload-run"), status = $(kind + "-upload-status");
    form.addEventListener("submit", function (ev) {
      ev.preventDefault(); clearErrors(form); status.textContent = "";
      if (!$(kind + "-file").files.length) {
        showError($(kind + "-file-error"), "choose a file first"); return;
      }
      button.disabled = true; status.textContent = "Uploading and checking…";
      upload(path, form).then(function (r) {
        button.disabled = false; status.textContent = "";
        if (!r.ok) {
          showProblem(form, r.doc, function (loc) { return fields[loc[0]] ? $(fields[loc[0]]) : null; },
                      $(kind + "-upload-error"));
          return;
        }
        status.textContent = added(r.doc);
      }, function () {
        button.disabled = false; status.textContent = "";
        showError($(kind + "-upload-error"), "the server could not be reached");
      });
    });
  }

  uploadForm("model", "/models", {file: "model-file", class_names: "model-class-names", input_range: "model-input-range",
                                  normalize: "model-normalize"},
    function (m) {
      addOption($("model"), m.name, m.title); addOption($("scan-model"), m.name, m.title);
      $("model").value = m.name; $("model").dispatchEvent(new Event("change"));
      var converted = m.conversion ? "; converted from " + m.conversion.from.toUpperCase() + ", outputs within " +
        m.conversion.max_abs_difference.toExponential(1) + " of " + m.conversion.checked_against : "";
      return "Added: " + m.title + " (input " + m.input_shape.join("×") + ", " + m.num_classes + " classes, pixels " +
        m.input_range.join("–") + ", " + m.input_range_source + converted + ")";
    });
  uploadForm("data", "/datasets", {file: "data-file"}, function (d) {
    addOption($("data"), d.name, d.title, d.splits || []); addOption($("scan-reference"), d.name, d.title);
    $("data").value = d.name; $("data").dispatchEvent(new Event("change"));
    var images = Object.keys(d.images || {}).reduce(function (n, k) { return n + d.images[k]; }, 0);
    return "Added: " + d.title + " (" + images + " images of " + (d.class_names || []).length + " classes" +
      ((d.splits || []).length ? ", splits " + d.splits.join(", ") : "") + ")" +
      (d.mixed_sizes ? ". Sizes differ (" + d.mixed_sizes + "): each job resizes them to its model's input" : "");
  });

  // ---- train a defense: a defend job; its model joins the model lists ------------------------
  if ($("defend-form")) {
    $("defend-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var form = ev.target, fs = chosenFieldset("trainer"); clearErrors(form);
      var limitRaw = $("defend-limit").value.trim();
      var body = {kind: "defend", plugin: $("trainer").value, params: readParams(fs),
                  model: $("model").value, data: $("data").value,
                  limit: limitRaw === "" ? null : Number(limitRaw)};
      $("defend-run").disabled = true;
      call("POST", "/jobs", body).then(function (r) {
        if (!r.ok) {
          finished("defend");
          showProblem(form, r.doc, function (loc) {
            if (loc[0] === "params" && loc.length > 1) { return fs.querySelector(".field[data-param='" + loc[1] + "']"); }
            if (loc[0] === "limit") { return $("defend-limit"); }
            return null;
          }, $("defend-error"));
          return;
        }
        watch("defend", r.doc.url, showDefend, "steps");
      });
    });
  }

  function showDefend(job) {
    var s = job.result, dl = $("defend-metrics"); dl.textContent = "";
    metric(dl, "New model", s.model);
    metric(dl, "Validation accuracy", pct(s.val_accuracy));
    metric(dl, "Training images", String(s.train_images));
    metric(dl, "Time", s.seconds.toFixed(1) + " s");
    ["model", "scan-model"].forEach(function (id) {
      var sel = $(id);
      if (!sel.querySelector("option[value='" + s.model + "']")) {
        var o = document.createElement("option");
        o.value = s.model; o.textContent = s.model_title; o.title = s.model; sel.appendChild(o);
      }
    });
    blobUrl(job.artifacts["model.keras"]).then(function (u) { $("defend-model").href = u; });
    $("defend-result").hidden = false;
  }

  // ---- recent jobs: state at a glance, and re-run for interrupted, failed or cancelled ones ---
  var PANELS = {attack: ["attack", showAttack, "images"], evaluate: ["eval", showEvaluation, "images"],
                defend: ["defend", showDefend, "steps"]};
  var RERUNNABLE = ["interrupted", "failed", "cancelled"];

  function describeJob(job) {
    var r = job.request || {};
    if (job.kind === "evaluate") {
      var c = r.config || {};
      return "evaluation of " + (c.attacks || []).map(function (a) { return a.plugin; }).join(", ") + " on " + c.model;
    }
    return job.kind + " " + r.plugin + " on " + r.model + (r.defense ? " behind " + r.defense.plugin : "");
  }

  function listJobs() {
    return call("GET", "/jobs?limit=12").then(function (r) {
      if (!r.ok) { return; }
      var list = $("jobs-list"); list.textContent = "";
      if (!r.doc.jobs.length) {
        var none = document.createElement("li"); none.className = "muted"; none.textContent = "No jobs yet.";
        list.appendChild(none);
      }
      r.doc.jobs.forEach(function (job) {
        var li = document.createElement("li"), state = document.createElement("span"), what = document.createElement("span");
        li.dataset.job = job.id; li.dataset.state = job.state;
        state.className = "state " + job.state; state.textContent = job.state;
        what.textContent = describeJob(job) + " · " + new Date(job.created * 1000).toLocaleTimeString();
        li.appendChild(state); li.appendChild(what);
        if (job.error) { what.title = job.error; }
        if (job.state === "done" && PANELS[job.kind]) {
          var open = document.createElement("a");
          open.href = job.links.page; open.className = "open"; open.textContent = "Result";
          open.setAttribute("aria-label", "Show the result of " + describeJob(job));
          open.addEventListener("click", function (ev) {
            ev.preventDefault(); history.pushState(null, "", job.links.page); showJob(job);
          });
          li.appendChild(open);
          if (job.links.report) {
            var report = document.createElement("a");
            report.className = "open"; report.textContent = "Report"; report.target = "_blank"; report.rel = "noopener";
            report.setAttribute("aria-label", "Open the full report of " + describeJob(job));
            reportLink(report, job); li.appendChild(report);
          }
          if (job.links.card) {
            var card = document.createElement("a");
            card.className = "open"; card.textContent = "Robustness card"; card.target = "_blank"; card.rel = "noopener";
            card.setAttribute("aria-label", "Open the robustness card of " + describeJob(job));
            reportLink(card, job, "card"); li.appendChild(card);
          }
        }
        if (RERUNNABLE.indexOf(job.state) >= 0 && PANELS[job.kind]) {
          var btn = document.createElement("button");
          btn.type = "button"; btn.className = "secondary small"; btn.textContent = "Re-run";
          btn.setAttribute("aria-label", "Re-run " + job.state + " " + describeJob(job));
          btn.addEventListener("click", function () { rerun(job, btn); });
          li.appendChild(btn);
        }
        list.appendChild(li);
      });
    });
  }

  function rerun(job, btn) {
    btn.disabled = true;
    call("POST", job.url + "/rerun").then(function (r) {
      if (!r.ok) {
        btn.disabled = false;
        btn.parentNode.appendChild(document.createTextNode(" " + (r.doc.detail || r.doc.title || "could not re-run")));
        return;
      }
      var panel = PANELS[job.kind];
      if (job.kind === "attack") { attackJobUrl = r.doc.url; $("attack-cancel").hidden = false; }
      var run = $(panel[0] + "-run"); if (run) { run.disabled = true; }
      watch(panel[0], r.doc.url, panel[1], panel[2]);
      listJobs();
    });
  }
  /* A job's result shown in its panel, as when it finished: what a bookmarked /?job=<id> opens. */
  function showJob(job) {
    var panel = PANELS[job.kind];
    if (!panel || job.state !== "done") { return; }
    panel[1](job);
    var box = $(panel[0] + "-result");
    if (box && box.scrollIntoView) { box.scrollIntoView({block: "nearest"}); }
  }

  $("jobs-refresh").addEventListener("click", listJobs);
  listJobs();
  var linked = new URLSearchParams(window.location.search).get("job");
  if (linked && /^[A-Za-z0-9_-]+$/.test(linked)) {
    call("GET", "/jobs/" + linked).then(function (r) {
      if (r.ok) { showJob(r.doc); }
      else { showError($("jobs-error"), "job " + linked + ": " + (r.doc.detail || "not found")); }
    });
  }
})();
