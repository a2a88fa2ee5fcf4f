// Upload with a progress bar per file: bytes sent, then "stored" once the record is final.
(function () {
  const form = document.getElementById('upload-form');
  if (!form) return;
  const list = document.getElementById('progress');
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    const input = document.getElementById('file');
    for (const file of input.files) send(file);
    form.reset();
  });
  function send(file) {
    const item = document.createElement('li');
    const label = document.createElement('span');
    const bar = document.createElement('progress');
    bar.max = 100; bar.value = 0;
    label.textContent = file.name + ': 0%';
    bar.setAttribute('aria-label', 'Upload progress of ' + file.name);
    item.append(label, bar);
    list.append(item);
    const data = new FormData();
    data.append('file', file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/v1/files');
    xhr.setRequestHeader('x-csrf-token', form.dataset.csrf);
    xhr.upload.addEventListener('progress', function (e) {
      if (!e.lengthComputable) return;
      const pct = Math.round((e.loaded / e.total) * 100);
      bar.value = pct;
      label.textContent = file.name + ': ' + pct + '% sent';
    });
    xhr.addEventListener('load', function () {
      if (xhr.status === 201) {
        bar.value = 100;
        label.textContent = file.name + ': 100% — stored';
        item.dataset.state = 'stored';
        setTimeout(function () { location.reload(); }, 600);
      } else {
        let message = 'upload failed (' + xhr.status + ')';
        try { message = JSON.parse(xhr.responseText).error.message; } catch (e) { /* keep the status */ }
        label.textContent = file.name + ': ' + message;
        item.dataset.state = 'failed';
        item.classList.add('error');
      }
    });
    xhr.addEventListener('error', function () {
      label.textContent = file.name + ': the connection failed';
      item.dataset.state = 'failed';
    });
    xhr.send(data);
  }
})();
