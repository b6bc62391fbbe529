// The create form's picture: taken by drop, paste or the file chooser, shown with a Remove
// button and the strength slider; and the mask editor, painted over the picture with a
// round brush. The form works without this file (a plain file field, sent as multipart);
// no inline scripts or style attributes either way: the page's CSP allows neither (styles
// set from here through element.style are allowed).
(function () {
  "use strict";

  var TYPES = ["image/png", "image/jpeg", "image/webp"];
  var STROKE = "#ff3d8b"; // how strokes look over the picture; the mask sent is white on black
  var MAX_UNDO = 200; // older strokes are baked into the sheet under the rest
  var NOT_TEXT = [
    "file", "range", "checkbox", "radio", "button", "submit", "reset", "hidden", "color",
  ];

  function field() {
    return document.getElementById("picture-field");
  }

  function part(root, selector) {
    return root.querySelector(selector);
  }

  function isTextField(el) {
    if (!el || !el.tagName) return false;
    if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    return el.tagName === "INPUT" && NOT_TEXT.indexOf(el.type) === -1;
  }

  // What the chosen model takes, from its option in the menu ("image mask").
  function modelInputs(root) {
    var select = root.closest("form").querySelector("#model");
    var option = select && select.selectedOptions[0];
    return option ? (option.getAttribute("data-inputs") || "").split(" ").filter(Boolean) : [];
  }

  function hasPicture(root) {
    return root.classList.contains("has-picture");
  }

  function state(root) {
    if (!root._picture) root._picture = { editor: null };
    return root._picture;
  }

  // -- choosing a picture -----------------------------------------------------------------

  function firstImage(transfer) {
    if (!transfer) return null;
    var files = transfer.files || [];
    for (var i = 0; i < files.length; i++) {
      if (files[i].type.indexOf("image/") === 0) return files[i];
    }
    var items = transfer.items || [];
    for (var j = 0; j < items.length; j++) {
      var item = items[j];
      if (item.kind === "file" && item.type.indexOf("image/") === 0) return item.getAsFile();
    }
    return files.length ? files[0] : null;
  }

  function problem(root, message) {
    var box = part(root, ".js-picture-problem");
    box.textContent = message || "";
    box.hidden = !message;
  }

  function acceptable(root, file) {
    var fits = TYPES.indexOf(file.type) !== -1;
    problem(root, fits ? "" : "That is not a PNG, JPEG or WebP picture.");
    return fits;
  }

  // A dropped or pasted file goes into the file field, so the form sends it as chosen; one
  // that is no picture is refused, and the picture there stays.
  function takeFile(root, file) {
    if (!acceptable(root, file)) return;
    var transfer = new DataTransfer();
    transfer.items.add(file);
    part(root, "#image_file").files = transfer.files;
    showFile(root, file);
  }

  // A file from the chooser has replaced whatever was there already.
  function chosen(root, file) {
    if (acceptable(root, file)) {
      showFile(root, file);
    } else {
      clearPicture(root);
    }
  }

  function showFile(root, file) {
    // A data: URL, not a blob: one: the CSP lets pictures come from this site and data: only.
    var reader = new FileReader();
    reader.onload = function () {
      showPicture(root, reader.result);
    };
    reader.readAsDataURL(file);
  }

  function showPicture(root, src) {
    var stage = part(root, ".picture-stage");
    var img = part(root, ".picture-img");
    if (!img) {
      img = document.createElement("img");
      img.className = "picture-img";
      img.alt = "The picture to start from";
      stage.insertBefore(img, stage.firstChild);
    }
    img.removeAttribute("width");
    img.removeAttribute("height");
    img.onload = function () {
      img.width = img.naturalWidth;
      img.height = img.naturalHeight;
    };
    img.src = src;
    part(root, ".js-image-ref").value = ""; // the file sent wins over a kept picture
    resetMask(root);
    var had = hasPicture(root);
    root.classList.add("has-picture");
    part(root, ".picture-preview").hidden = false;
    refresh(root, { pictureAdded: !had });
  }

  function clearPicture(root) {
    part(root, "#image_file").value = "";
    part(root, ".js-image-ref").value = "";
    var img = part(root, ".picture-img");
    if (img) img.remove();
    resetMask(root);
    root.classList.remove("has-picture");
    part(root, ".picture-preview").hidden = true;
    refresh(root, {});
  }

  function removePicture(root) {
    problem(root, "");
    clearPicture(root);
    part(root, "#image_file").focus();
  }

  // Show and enable what the model and the picture allow: the field itself (on a change of
  // model), the mask editor, the strength slider and the aspect ratio "As the picture".
  function refresh(root, how) {
    var takes = modelInputs(root);
    var was = root.hidden;
    if (how.modelChanged) root.hidden = takes.indexOf("image") === -1;
    var off = root.hidden;
    var back = was && !off; // the picture there is the job's again
    ["#image_file", ".js-image-ref"].forEach(function (selector) {
      part(root, selector).disabled = off;
    });
    var masks = !off && takes.indexOf("mask") !== -1;
    part(root, ".js-mask-ref").disabled = !masks;
    part(root, ".js-mask-file").disabled = !masks;
    var toggle = part(root, ".js-mask-toggle");
    toggle.hidden = !(masks && hasPicture(root));
    if (toggle.hidden) setEditing(root, false);
    var canvas = part(root, ".mask-canvas");
    canvas.hidden = !masks || !state(root).editor || !state(root).editor.fitted;
    refreshStrength(root);
    refreshRatio(root, !off && hasPicture(root), how.pictureAdded || back);
  }

  function refreshRatio(root, shaped, added) {
    var select = document.getElementById("aspect_ratio");
    var option = select && select.querySelector(".js-picture-ratio");
    if (!option) return;
    option.hidden = option.disabled = !shaped;
    if (shaped && added) select.value = "";
    if (!shaped && select.value === "") select.value = select.getAttribute("data-default");
  }

  // -- the strength slider: a handle on the Advanced field of the same name -------------------

  function refreshStrength(root) {
    var box = part(root, ".strength-field");
    var target = document.getElementById("f-prompt_strength");
    box.hidden = !target || root.hidden || !hasPicture(root);
    if (!target) return;
    var slider = part(root, "#strength-slider");
    slider.min = target.min || "0";
    slider.max = target.max || "1";
    slider.value = target.value || target.placeholder || "0.8";
    part(root, "#strength-value").textContent = Number(slider.value).toFixed(2);
  }

  // -- the mask editor ----------------------------------------------------------------------

  function Editor(root) {
    this.root = root;
    this.canvas = part(root, ".mask-canvas");
    this.ctx = this.canvas.getContext("2d");
    this.sheet = document.createElement("canvas"); // the kept mask and strokes baked in
    this.ops = [];
    this.stroke = null;
    this.erase = false;
    this.fitted = false;
    this.kept = "none"; // a mask kept from the last submit: "loading", "drawn" or "failed"
    this.brush = Number(part(root, ".js-brush-size").value);
  }

  Editor.prototype.handle = function (type, event) {
    if (type === "pointerdown") this.down(event);
    else if (type === "pointermove") this.move(event);
    else if (type === "pointerleave") this.ring(null);
    else this.up(event);
  };

  // The canvas takes the picture's own size (CSS scales it): the mask matches the picture.
  Editor.prototype.fit = function (img) {
    var width = img.naturalWidth, height = img.naturalHeight;
    this.canvas.width = this.sheet.width = width;
    this.canvas.height = this.sheet.height = height;
    this.fitted = true;
    var url = this.canvas.getAttribute("data-mask-url");
    if (url) this.drawKept(url);
    this.redraw();
  };

  // A mask kept from the last submit (white: may change) becomes strokes on the sheet again.
  Editor.prototype.drawKept = function (url) {
    var self = this;
    self.kept = "loading";
    var mask = new Image();
    mask.onload = function () {
      var ctx = self.sheet.getContext("2d");
      ctx.drawImage(mask, 0, 0, self.sheet.width, self.sheet.height);
      var data = ctx.getImageData(0, 0, self.sheet.width, self.sheet.height);
      var px = data.data, r = parseInt(STROKE.slice(1, 3), 16);
      var g = parseInt(STROKE.slice(3, 5), 16), b = parseInt(STROKE.slice(5, 7), 16);
      for (var i = 0; i < px.length; i += 4) {
        px[i + 3] = px[i];
        px[i] = r;
        px[i + 1] = g;
        px[i + 2] = b;
      }
      ctx.putImageData(data, 0, 0);
      self.kept = "drawn";
      self.redraw();
    };
    mask.onerror = function () {
      self.kept = "failed";
    };
    mask.src = url;
  };

  Editor.prototype.scale = function () {
    var box = this.canvas.getBoundingClientRect();
    return box.width ? this.canvas.width / box.width : 1;
  };

  Editor.prototype.point = function (event) {
    var box = this.canvas.getBoundingClientRect();
    return [
      (event.clientX - box.left) * (this.canvas.width / box.width),
      (event.clientY - box.top) * (this.canvas.height / box.height),
    ];
  };

  Editor.prototype.apply = function (ctx, op) {
    if (op.clear) {
      ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
      return;
    }
    ctx.save();
    ctx.globalCompositeOperation = op.erase ? "destination-out" : "source-over";
    ctx.strokeStyle = ctx.fillStyle = STROKE;
    ctx.lineWidth = op.size;
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath();
    var points = op.points;
    if (points.length === 1) {
      ctx.arc(points[0][0], points[0][1], op.size / 2, 0, Math.PI * 2);
      ctx.fill();
    } else {
      ctx.moveTo(points[0][0], points[0][1]);
      for (var i = 1; i < points.length; i++) ctx.lineTo(points[i][0], points[i][1]);
      ctx.stroke();
    }
    ctx.restore();
  };

  Editor.prototype.redraw = function () {
    var ctx = this.ctx;
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.drawImage(this.sheet, 0, 0);
    for (var i = 0; i < this.ops.length; i++) this.apply(ctx, this.ops[i]);
  };

  Editor.prototype.down = function (event) {
    if (!this.root.classList.contains("editing")) return;
    if (event.pointerType === "mouse" && event.button !== 0) return;
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    var size = this.brush * this.scale(); // the brush is in screen pixels, the canvas is not
    this.stroke = { erase: this.erase, size: size, points: [this.point(event)] };
    this.ops.push(this.stroke);
    if (this.ops.length > MAX_UNDO) this.apply(this.sheet.getContext("2d"), this.ops.shift());
    this.apply(this.ctx, this.stroke);
    this.ring(event);
  };

  Editor.prototype.move = function (event) {
    this.ring(event);
    if (!this.stroke) return;
    event.preventDefault();
    var moves = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    if (!moves.length) moves = [event];
    for (var i = 0; i < moves.length; i++) {
      var points = this.stroke.points;
      var next = this.point(moves[i]);
      var last = points[points.length - 1];
      points.push(next);
      var piece = { erase: this.stroke.erase, size: this.stroke.size, points: [last, next] };
      this.apply(this.ctx, piece);
    }
  };

  Editor.prototype.up = function (event) {
    if (!this.stroke) return;
    this.stroke = null;
    if (this.canvas.hasPointerCapture(event.pointerId)) {
      this.canvas.releasePointerCapture(event.pointerId);
    }
  };

  // The brush's outline follows the pointer (a mouse's; a finger covers it anyway).
  Editor.prototype.ring = function (event) {
    var ring = part(this.root, ".brush-ring");
    var show = event && event.pointerType === "mouse" && this.root.classList.contains("editing");
    ring.hidden = !show;
    if (!show) return;
    var box = this.canvas.getBoundingClientRect();
    ring.style.width = ring.style.height = this.brush + "px";
    ring.style.left = event.clientX - box.left + "px";
    ring.style.top = event.clientY - box.top + "px";
  };

  Editor.prototype.undo = function () {
    if (!this.ops.length) return;
    this.ops.pop();
    this.redraw();
  };

  Editor.prototype.clear = function () {
    this.ops.push({ clear: true });
    this.redraw();
  };

  Editor.prototype.setBrush = function (size) {
    var slider = part(this.root, ".js-brush-size");
    size = Math.max(Number(slider.min), Math.min(Number(slider.max), Math.round(size)));
    this.brush = size;
    slider.value = size;
    part(this.root, ".js-brush-value").textContent = size;
  };

  // Whether anything is painted: the canvas read small (a stroke leaves some alpha there).
  Editor.prototype.painted = function () {
    if (!this.fitted) return false;
    var scale = Math.min(1, 256 / Math.max(this.canvas.width, this.canvas.height));
    var probe = document.createElement("canvas");
    probe.width = Math.max(1, Math.round(this.canvas.width * scale));
    probe.height = Math.max(1, Math.round(this.canvas.height * scale));
    var ctx = probe.getContext("2d");
    ctx.drawImage(this.canvas, 0, 0, probe.width, probe.height);
    var px = ctx.getImageData(0, 0, probe.width, probe.height).data;
    for (var i = 3; i < px.length; i += 4) if (px[i]) return true;
    return false;
  };

  // The mask as the API takes it: a PNG at the picture's size, white where painted.
  Editor.prototype.maskFile = function () {
    var out = document.createElement("canvas");
    out.width = this.canvas.width;
    out.height = this.canvas.height;
    var ctx = out.getContext("2d");
    ctx.drawImage(this.canvas, 0, 0);
    ctx.globalCompositeOperation = "source-in";
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.globalCompositeOperation = "destination-over";
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, out.width, out.height);
    // Synchronously (toBlob is not): the form's submit handler reads the field right after.
    var uri = out.toDataURL("image/png");
    var text = atob(uri.slice(uri.indexOf(",") + 1));
    var bytes = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return new File([bytes], "mask.png", { type: "image/png" });
  };

  function setEditing(root, on) {
    var toggle = part(root, ".js-mask-toggle");
    var img = part(root, ".picture-img");
    if (on && !img) return;
    root.classList.toggle("editing", on);
    toggle.setAttribute("aria-pressed", on ? "true" : "false");
    part(root, "#mask-tools").hidden = !on;
    if (!on) {
      var ring = part(root, ".brush-ring");
      ring.hidden = true;
      return;
    }
    var st = state(root);
    if (!st.editor) st.editor = new Editor(root);
    var editor = st.editor;
    whenLoaded(img, function () {
      if (st.editor !== editor) return; // another picture came meanwhile
      if (!editor.fitted) editor.fit(img);
      part(root, ".mask-canvas").hidden = false;
    });
  }

  function resetMask(root) {
    var st = state(root);
    setEditing(root, false);
    var canvas = part(root, ".mask-canvas");
    if (st.editor) canvas.width = canvas.height = 0;
    canvas.removeAttribute("data-mask-url");
    canvas.hidden = true;
    st.editor = null;
    part(root, ".js-mask-ref").value = "";
    part(root, ".js-mask-file").value = "";
  }

  function whenLoaded(img, then) {
    if (img.complete && img.naturalWidth) {
      then();
    } else {
      img.addEventListener("load", then, { once: true });
    }
  }

  // Before the form is sent (capture: ahead of htmx's own submit handler), the painted
  // mask goes into the mask's file field; a kept one is in the painting already.
  function writeMask(root) {
    var editor = state(root).editor;
    var file = part(root, ".js-mask-file");
    if (!editor || !editor.fitted || file.disabled) return;
    // A kept mask not drawn in (still loading, or lost) stays named; a painted one wins.
    if (editor.kept === "none" || editor.kept === "drawn") part(root, ".js-mask-ref").value = "";
    if (editor.painted()) {
      var transfer = new DataTransfer();
      transfer.items.add(editor.maskFile());
      file.files = transfer.files;
    } else {
      file.value = "";
    }
  }

  // -- wiring ---------------------------------------------------------------------------------

  function init(root) {
    if (!root || root._picture) return;
    state(root);
    var canvas = part(root, ".mask-canvas");
    var kinds = ["pointerdown", "pointermove", "pointerup", "pointercancel", "pointerleave"];
    kinds.forEach(function (type) {
      canvas.addEventListener(type, function (event) {
        var editor = state(root).editor;
        if (editor) editor.handle(type, event);
      });
    });
    refresh(root, {});
    var img = part(root, ".picture-img");
    if (img && root.getAttribute("data-edit") === "on" && !part(root, ".js-mask-toggle").hidden) {
      setEditing(root, true);
    }
  }

  document.addEventListener("submit", function (event) {
    var root = event.target.querySelector && event.target.querySelector("#picture-field");
    if (root) writeMask(root);
  }, true);

  document.addEventListener("change", function (event) {
    var target = event.target;
    var root = field();
    if (!root) return;
    if (target.id === "image_file") {
      if (target.files.length) chosen(root, target.files[0]);
    } else if (target.id === "model") {
      refresh(root, { modelChanged: true });
    }
  });

  document.addEventListener("input", function (event) {
    var target = event.target;
    var root = field();
    if (!root) return;
    if (target.id === "strength-slider") {
      var advanced = document.getElementById("f-prompt_strength");
      if (advanced) advanced.value = target.value;
      part(root, "#strength-value").textContent = Number(target.value).toFixed(2);
    } else if (target.id === "f-prompt_strength") {
      refreshStrength(root);
    } else if (target.classList.contains("js-brush-size") && state(root).editor) {
      state(root).editor.setBrush(Number(target.value));
    }
  });

  document.addEventListener("click", function (event) {
    var root = event.target.closest("#picture-field");
    if (!root) return;
    var editor = state(root).editor;
    if (event.target.closest(".js-picture-remove")) {
      removePicture(root);
    } else if (event.target.closest(".js-mask-toggle")) {
      setEditing(root, !root.classList.contains("editing"));
    } else if (event.target.closest(".js-mask-erase") && editor) {
      editor.erase = !editor.erase;
      event.target.setAttribute("aria-pressed", editor.erase ? "true" : "false");
    } else if (event.target.closest(".js-mask-undo") && editor) {
      editor.undo();
    } else if (event.target.closest(".js-mask-clear") && editor) {
      editor.clear();
    }
  });

  // Paste a picture anywhere on the page but into a text field (or into the picture field).
  document.addEventListener("paste", function (event) {
    var root = field();
    if (!root || root.hidden) return;
    if (isTextField(event.target) && !root.contains(event.target)) return;
    var file = firstImage(event.clipboardData);
    if (!file) return;
    event.preventDefault();
    takeFile(root, file);
  });

  // Drop a picture anywhere on the create form.
  function dropTarget(event) {
    var root = field();
    var types = event.dataTransfer ? Array.prototype.slice.call(event.dataTransfer.types) : [];
    if (!root || root.hidden || types.indexOf("Files") === -1) return null;
    return root.closest("form").contains(event.target) ? root : null;
  }

  document.addEventListener("dragover", function (event) {
    var root = dropTarget(event);
    if (!root) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    root.classList.add("dragging");
  });

  document.addEventListener("dragleave", function (event) {
    var root = field();
    if (root && !root.closest("form").contains(event.relatedTarget)) {
      root.classList.remove("dragging");
    }
  });

  document.addEventListener("drop", function (event) {
    var root = dropTarget(event);
    if (!root) return;
    event.preventDefault();
    root.classList.remove("dragging");
    var file = firstImage(event.dataTransfer);
    if (file) takeFile(root, file);
  });

  // [ and ] change the brush, Ctrl+Z (Cmd+Z) takes the last stroke back, outside text fields.
  document.addEventListener("keydown", function (event) {
    var root = field();
    var editor = root && root.classList.contains("editing") && state(root).editor;
    if (!editor || isTextField(event.target)) return;
    var key = event.key || "";
    if ((event.ctrlKey || event.metaKey) && !event.shiftKey && key.toLowerCase() === "z") {
      event.preventDefault();
      editor.undo();
    } else if (key === "[" || key === "]") {
      event.preventDefault();
      editor.setBrush(key === "]" ? editor.brush * 1.25 + 1 : editor.brush / 1.25 - 1);
    }
  });

  // A form that came back with problems, or Advanced fields of another model, start afresh.
  document.addEventListener("htmx:load", function (event) {
    var elt = event.detail.elt;
    if (elt.id === "create-form") init(part(elt, "#picture-field"));
    else if (elt.id === "advanced-fields" && field()) refreshStrength(field());
  });

  init(field());
})();
