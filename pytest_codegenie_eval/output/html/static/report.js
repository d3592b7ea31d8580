// Sorting and filtering of the tables that ask for it (List.js, shipped alongside).
// Loaded as a file, never inline: the pages' Content-Security-Policy runs no inline script.
// A link can carry the view: index.html#filter=axios&sort=c-score:desc
// Tables drawn later by site.js are made lists by calling window.CGList(element).
(function () {
  "use strict";
  if (typeof List !== "function") { return; }
  // A cell shown formatted ("12,345", "830 ms") carries its number in data-sort-value:
  // two such cells compare as numbers, any others as List.js compares text.
  function sortValue(item, name) {
    var cell = item.elm.querySelector("." + name);
    var value = cell ? cell.getAttribute("data-sort-value") : null;
    return value === null ? NaN : parseFloat(value);
  }
  function listify(el) {
    if (!el.id || el.getAttribute("data-list-ready") !== null) { return; }
    var params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    var names = el.getAttribute("data-list").split(",");
    var list = new List(el.id, {
      valueNames: names,
      sortFunction: function (a, b, options) {
        var x = sortValue(a, options.valueName);
        var y = sortValue(b, options.valueName);
        if (!isNaN(x) && !isNaN(y)) { return x - y; }
        var natural = list.utils.naturalSort;
        var compare = options.insensitive ? natural.caseInsensitive : natural;
        return compare(a.values()[options.valueName], b.values()[options.valueName]);
      }
    });
    var sort = (params.get("sort") || "").split(":");
    if (sort[0] && names.indexOf(sort[0]) !== -1) {
      list.sort(sort[0], { order: sort[1] === "desc" ? "desc" : "asc" });
    }
    var box = el.querySelector("input.search");
    if (box) {
      // List.js listens to keys; a pasted or autofilled filter must apply too
      box.addEventListener("input", function () { list.search(box.value); });
    }
    var filter = params.get("filter");
    if (filter) {
      if (box) { box.value = filter; }
      list.search(filter);
    }
    function mark() { el.setAttribute("data-shown", String(list.visibleItems.length)); }
    list.on("updated", mark);
    mark();
    el.setAttribute("data-list-ready", String(list.items.length));
  }
  window.CGList = listify;
  document.querySelectorAll("[data-list]").forEach(listify);
})();
