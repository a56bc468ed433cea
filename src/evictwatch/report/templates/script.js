// The report's only script (pinned by its SHA-256 in the page's Content-Security-Policy):
// legend buttons hide an outcome in both charts; the box filters the records table.
(function () {
  'use strict';
  var body = document.body;
  document.querySelectorAll('button[data-toggle]').forEach(function (button) {
    button.addEventListener('click', function () {
      var off = body.classList.toggle('hide-' + button.dataset.toggle);
      button.setAttribute('aria-pressed', off ? 'false' : 'true');
    });
  });
  var filter = document.getElementById('filter'), shown = document.getElementById('shown');
  if (!filter) { return; }
  var rows = document.querySelectorAll('#records tbody tr'), texts = null;
  filter.addEventListener('input', function () {
    if (!texts) {
      texts = Array.prototype.map.call(rows, function (row) { return row.textContent.toLowerCase(); });
    }
    var query = filter.value.toLowerCase(), count = 0;
    for (var i = 0; i < rows.length; i++) {
      var hit = !query || texts[i].indexOf(query) >= 0;
      rows[i].hidden = !hit;
      if (hit) { count++; }
    }
    shown.textContent = String(count);
  });
})();
