// cairn pages: a little plain JavaScript, no framework, no inline script anywhere.
// - Upload: file picker and drag-and-drop, several files at once, one progress bar per file showing
//   bytes sent, then "stored" once the server answers 201 (the record is final on the chain); each
//   can be cancelled, and leaving the page while any is on its way asks first.
// - Live regions ([data-live-refresh]): re-fetched every few seconds while the page is visible.
(function () {
  'use strict';

  var UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  function humanSize(n) {
    var u = 0;
    while (n >= 1024 && u < UNITS.length - 1) { n /= 1024; u += 1; }
    return u === 0 ? n + ' B' : (n >= 100 ? Math.round(n) : n.toFixed(1)) + ' ' + UNITS[u];
  }

  // Replace the element with id `id` by the same element of a fresh copy of this page.
  function refreshRegion(id) {
    return fetch(location.pathname + location.search, { credentials: 'same-origin', headers: { accept: 'text/html' } })
      .then(function (res) {
        if (!res.ok) throw new Error('HTTP ' + res.status);
        // Sent to the sign-in page: the session ended.
        if (res.redirected && new URL(res.url).pathname !== location.pathname) throw new Error('signed out');
        return res.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var fresh = doc.getElementById(id);
        var current = document.getElementById(id);
        if (!fresh) throw new Error('the page came back without its live part');
        if (current) current.replaceWith(document.importNode(fresh, true));
      });
  }

  // ---------------------------------------------------------------- upload
  var form = document.getElementById('upload-form');
  if (form) setUpUpload(form);

  function setUpUpload(form) {
    var input = document.getElementById('file');
    var zone = document.getElementById('dropzone');
    var list = document.getElementById('progress');
    var csrf = form.getAttribute('data-csrf');
    var maxBytes = Number(form.getAttribute('data-max-bytes')) || Infinity;
    var maxHuman = form.getAttribute('data-max-human') || humanSize(maxBytes);
    var announce = document.getElementById('upload-announce');
    var queue = [];
    var running = 0;
    var pending = 0;
    var CONCURRENT = 3;

    // Leaving the page cuts every upload still on its way off, and the server keeps none of it.
    window.addEventListener('beforeunload', function (event) {
      if (pending === 0) return;
      event.preventDefault();
      event.returnValue = '';
    });

    // Screen readers hear an upload start, end and fail, not every progress step.
    function say(text) {
      if (announce) announce.textContent = text;
    }

    form.addEventListener('submit', function (event) {
      event.preventDefault();
      if (!input.files || input.files.length === 0) {
        input.focus();
        return;
      }
      enqueue(input.files);
      form.reset();
    });

    ['dragenter', 'dragover'].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        zone.classList.add('dragging');
      });
    });
    ['dragleave', 'dragend'].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        if (event.target === zone) zone.classList.remove('dragging');
      });
    });
    zone.addEventListener('drop', function (event) {
      event.preventDefault();
      zone.classList.remove('dragging');
      if (event.dataTransfer && event.dataTransfer.files && event.dataTransfer.files.length > 0) enqueue(event.dataTransfer.files);
    });
    // A file dropped next to the box should not navigate away from the page.
    window.addEventListener('dragover', function (event) { event.preventDefault(); });
    window.addEventListener('drop', function (event) { event.preventDefault(); });

    function enqueue(files) {
      for (var i = 0; i < files.length; i++) {
        var item = makeItem(files[i]);
        if (files[i].size > maxBytes) {
          fail(item, 'too large: the limit is ' + maxHuman + ' per file; nothing was sent');
          continue;
        }
        pending += 1;
        queue.push(item);
      }
      pump();
    }

    function makeItem(file) {
      var li = document.createElement('li');
      li.className = 'upload-item';
      li.setAttribute('data-state', 'waiting');
      li.setAttribute('data-name', file.name);
      var row = document.createElement('div');
      row.className = 'upload-row';
      var name = document.createElement('span');
      name.className = 'upload-name';
      name.textContent = file.name;
      var status = document.createElement('span');
      status.className = 'upload-status';
      status.textContent = 'waiting · ' + humanSize(file.size);
      var cancel = document.createElement('button');
      cancel.type = 'button';
      cancel.className = 'btn btn-small upload-cancel';
      cancel.textContent = 'Cancel';
      var hidden = document.createElement('span');
      hidden.className = 'vh';
      hidden.textContent = ' ' + file.name;
      cancel.append(hidden);
      row.append(name, status, cancel);
      var bar = document.createElement('progress');
      bar.max = Math.max(file.size, 1);
      bar.value = 0;
      bar.setAttribute('aria-label', 'Upload progress of ' + file.name);
      li.append(row, bar);
      list.append(li);
      var item = { file: file, li: li, status: status, bar: bar, cancel: cancel, xhr: null };
      cancel.addEventListener('click', function () { stop(item); });
      return item;
    }

    // Cancel: a waiting file leaves the queue; one on its way is cut off (the server then keeps
    // nothing of it, unless its record was already being written).
    function stop(item) {
      var at = queue.indexOf(item);
      if (at >= 0) {
        queue.splice(at, 1);
        pending -= 1;
        fail(item, 'cancelled; nothing was sent');
        item.status.focus();
      } else if (item.xhr) {
        item.cancelledWhile = item.li.getAttribute('data-state');
        item.xhr.abort();
        item.status.focus();
      }
    }

    function setState(item, state, text) {
      item.li.setAttribute('data-state', state);
      item.status.textContent = text;
    }

    function done(item) {
      if (item.cancel) item.cancel.remove();
      item.status.tabIndex = -1; // focus lands here after a cancel
    }

    function fail(item, message) {
      setState(item, 'failed', message);
      item.li.classList.add('failed');
      item.bar.value = 0;
      done(item);
      say(item.file.name + ': ' + message);
    }

    function pump() {
      while (running < CONCURRENT && queue.length > 0) {
        running += 1;
        send(queue.shift());
      }
    }

    function finished() {
      running -= 1;
      pending -= 1;
      pump();
      if (pending === 0) refreshRegion('file-lists').catch(function () { /* the list stays as it was */ });
    }

    function send(item) {
      var file = item.file;
      var data = new FormData();
      data.append('file', file, file.name);
      var xhr = new XMLHttpRequest();
      item.xhr = xhr;
      say(file.name + ': uploading');
      xhr.open('POST', '/api/v1/files');
      xhr.setRequestHeader('x-csrf-token', csrf);
      xhr.setRequestHeader('accept', 'application/json');
      setState(item, 'sending', '0 B of ' + humanSize(file.size) + ' sent (0%)');
      xhr.upload.addEventListener('progress', function (e) {
        if (!e.lengthComputable) return;
        // e.total counts the multipart envelope too; report the file's own bytes.
        var sent = Math.min(file.size, Math.round((e.loaded / e.total) * file.size));
        var pct = e.total > 0 ? Math.floor((e.loaded / e.total) * 100) : 100;
        item.bar.value = Math.max(sent, 0);
        setState(item, 'sending', humanSize(sent) + ' of ' + humanSize(file.size) + ' sent (' + pct + '%)');
      });
      xhr.upload.addEventListener('load', function () {
        item.bar.value = item.bar.max;
        setState(item, 'storing', humanSize(file.size) + ' sent (100%) · storing…');
      });
      xhr.addEventListener('load', function () {
        if (xhr.status === 201) {
          var block = '';
          try { block = ' in block ' + JSON.parse(xhr.responseText)[0].block; } catch (e) { /* no block number */ }
          item.bar.value = item.bar.max;
          setState(item, 'stored', '100% · stored' + block);
          item.li.classList.add('stored');
          done(item);
          say(file.name + ': stored');
        } else {
          var message = 'upload failed (HTTP ' + xhr.status + ')';
          try { message = JSON.parse(xhr.responseText).error.message; } catch (e) { /* keep the status */ }
          if (xhr.status === 413) message = 'too large: ' + message;
          if (xhr.status === 401) message = 'your session has ended; sign in again and retry';
          fail(item, message);
        }
        finished();
      });
      xhr.addEventListener('error', function () {
        fail(item, 'the connection failed before the file was stored; try again');
        finished();
      });
      xhr.addEventListener('abort', function () {
        fail(item, item.cancelledWhile === 'storing' ? 'cancelled while its record was being written: it may still appear in your files' : 'cancelled; nothing was stored');
        finished();
      });
      xhr.send(data);
    }
  }

  // ---------------------------------------------------------------- live regions
  var live = document.querySelectorAll('[data-live-refresh]');
  live.forEach(function (el) {
    var id = el.id;
    var every = Math.max(2000, Number(el.getAttribute('data-live-refresh')) || 5000);
    var busy = false;
    var updated = new Date();
    // What is on screen may be old: said, with the time of the last update, until updates work again.
    var notice = document.createElement('p');
    notice.className = 'stale-notice';
    notice.setAttribute('role', 'status');
    notice.hidden = true;
    document.getElementById(id).before(notice);
    setInterval(function () {
      if (busy || document.visibilityState !== 'visible') return;
      busy = true;
      refreshRegion(id)
        .then(function () {
          updated = new Date();
          notice.hidden = true;
        })
        .catch(function (err) {
          notice.textContent = 'Live updates stopped (' + err.message + '); what you see is from ' + updated.toLocaleTimeString() + '. Reload the page, or sign in again.';
          notice.hidden = false;
        })
        .then(function () { busy = false; });
    }, every);
  });
})();
