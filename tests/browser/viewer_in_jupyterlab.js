// Opens notebook 04 in JupyterLab in Debian's chromium, runs all its cells, then uses the answer
// viewer as a person would: next, next until another room, a qtype filter. Prints one JSON object
// with what it saw; tests/browser/test_browser.py makes the assertions.
//   node viewer_in_jupyterlab.js URL SCREENSHOT.png [TIMEOUT_MS]
'use strict';
const path = require('path');
const { chromium } = require(path.join(__dirname, 'node_modules', 'playwright-core'));

const [url, screenshot, timeoutArg] = process.argv.slice(2);
const timeout = Number(timeoutArg || 600000);
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// The viewer's parts, found from its "next" button: the VBox holding it, and the row of the slider.
function viewerParts() {
  const boxes = [...document.querySelectorAll('.widget-vbox')].filter(
    (b) => [...b.querySelectorAll('button')].some((x) => x.textContent.includes('next')));
  const box = boxes[boxes.length - 1];
  const row = [...box.querySelectorAll('.widget-hbox')].find(
    (r) => [...r.querySelectorAll('button')].some((x) => x.textContent.includes('next')));
  const labels = row.querySelectorAll('.widget-label');
  return {
    html: box.querySelector('.widget-html-content').innerText,
    readout: row.querySelector('.widget-readout').innerText.trim(),
    count: labels[labels.length - 1].innerText.trim(),
    src: box.querySelector('.widget-image').getAttribute('src'),
    loaded: box.querySelector('.widget-image').complete && box.querySelector('.widget-image').naturalWidth > 0,
  };
}

async function viewerState(page) {
  const state = await page.evaluate(`(${viewerParts.toString()})()`);
  const image = page.locator('.widget-image').last();
  await image.scrollIntoViewIfNeeded();
  state.picture = (await image.screenshot()).toString('base64');
  return state;
}

// Waits until the text changed from `before` (and the picture, when `pictureFrom` is given: questions
// about the same room show the same picture) and the picture has loaded.
async function changed(page, before, pictureFrom) {
  await page.waitForFunction(`(() => {
    const now = (${viewerParts.toString()})();
    return now.html !== ${JSON.stringify(before.html)} && now.loaded
      && ${pictureFrom ? `now.src !== ${JSON.stringify(pictureFrom.src)}` : 'true'};
  })()`, null, { timeout: 60000 });
  await page.waitForTimeout(300);
  return viewerState(page);
}

(async () => {
  const seen = { console: [], pageErrors: [], dialogs: [] };
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    page.on('console', (m) => seen.console.push({ type: m.type(), text: m.text().slice(0, 500) }));
    page.on('pageerror', (e) => seen.pageErrors.push(String(e.message).slice(0, 500)));
    await page.goto(url);
    await page.waitForFunction(() => {
      const nb = window.jupyterapp && window.jupyterapp.shell.currentWidget;
      const kernel = nb && nb.sessionContext && nb.sessionContext.session && nb.sessionContext.session.kernel;
      return kernel && kernel.status === 'idle';
    }, null, { timeout: 120000 });
    await page.waitForTimeout(3000);  // the build check and other start-up dialogs come now
    seen.dialogs.push(...await page.locator('.jp-Dialog').allInnerTexts());
    seen.toasts = await page.locator('.Toastify__toast').allInnerTexts();  // e.g. "get notified about news?"

    await page.evaluate(() => window.jupyterapp.commands.execute('notebook:run-all-cells'));
    await page.waitForFunction(() => {
      const nb = window.jupyterapp.shell.currentWidget;
      const cells = nb.content.widgets.filter((c) => c.model.type === 'code');
      const failed = cells.some((c) => c.model.outputs.toJSON().some((o) => o.output_type === 'error'));
      const done = cells.every((c) => c.model.executionCount !== null);
      return failed || (done && nb.sessionContext.session.kernel.status === 'idle');
    }, null, { timeout, polling: 1000 });
    seen.errors = await page.evaluate(() => window.jupyterapp.shell.currentWidget.content.widgets
      .flatMap((c) => (c.model.type === 'code' ? c.model.outputs.toJSON() : []))
      .filter((o) => o.output_type === 'error').map((o) => `${o.ename}: ${o.evalue}`));
    seen.outputText = await page.locator('.jp-OutputArea-output').allInnerTexts();
    if (seen.errors.length) throw new Error('a cell failed');

    const next = page.locator('button', { hasText: 'next' }).last();
    await next.scrollIntoViewIfNeeded();
    await page.waitForFunction(`(${viewerParts.toString()})().loaded`, null, { timeout: 60000 });
    seen.first = await viewerState(page);
    await next.click();
    seen.second = await changed(page, seen.first);
    // The first room's questions, then the next room's: step until the id says another scene.
    const room = (state) => state.html.split(/\s/)[0].split('_')[0];
    let state = seen.second;
    for (let i = 0; i < 12 && room(state) === room(seen.first); i++) {
      await next.click();
      state = await changed(page, state);
    }
    if (room(state) !== room(seen.first)) state = await changed(page, { html: '' }, seen.first);
    seen.otherRoom = state;

    const qtype = page.locator('.widget-dropdown select').nth(1);
    const options = await qtype.locator('option').allInnerTexts();
    // A question type other than the shown one, so the filter must change the example.
    const shownQtype = (state.html.match(/qtype (\S+)/) || [])[1];
    seen.qtypeChoice = options.find((o) => o !== 'all' && o !== shownQtype);
    await qtype.selectOption({ label: seen.qtypeChoice });
    seen.filtered = await changed(page, state);
    await page.waitForTimeout(2000);  // anything the browser would send back arrives now
    seen.settled = await viewerState(page);
    seen.dialogs.push(...await page.locator('.jp-Dialog').allInnerTexts());
    seen.widgetErrors = await page.locator('text=Error displaying widget').count();
    seen.toasts.push(...await page.locator('.Toastify__toast').allInnerTexts());
    await page.screenshot({ path: screenshot, fullPage: false });
    // JupyterLab's Log Console: what the kernel sent outside any cell (a figure shown after a widget
    // step, a warning printed in a widget callback), at its default level (warnings and errors).
    await page.evaluate(() => window.jupyterapp.commands.execute('logconsole:open', { insertMode: 'split-bottom' }));
    await page.waitForSelector('.jp-LogConsolePanel', { timeout: 30000 });
    await page.waitForTimeout(1000);
    seen.logConsole = await page.locator('.jp-LogConsolePanel .jp-OutputArea-child').allInnerTexts();
    seen.logConsoleImages = await page.locator('.jp-LogConsolePanel img').count();
    // The probe's control: what a widget callback prints (a figure it left open would go the same way)
    // must show there. The viewer's next button gets a second handler that prints, and is pressed.
    await page.evaluate(() => {
      const nb = [...window.jupyterapp.shell.widgets('main')].find((w) => w.sessionContext);
      const code = 'viewer.next_button.on_click(lambda _: print("log console probe"))';
      return nb.sessionContext.session.kernel.requestExecute({ code, silent: true }).done;
    });
    await next.click();
    await page.waitForTimeout(2000);
    seen.logConsoleControl = await page.locator('.jp-LogConsolePanel .jp-OutputArea-child').allInnerTexts();
    await page.screenshot({ path: screenshot.replace(/\.png$/, '_log_console.png'), fullPage: false });
  } catch (e) {
    seen.failure = String(e && e.stack || e).slice(0, 3000);
  } finally {
    await browser.close();
    for (const key of ['first', 'second', 'otherRoom', 'filtered', 'settled']) {
      if (seen[key]) seen[key].pictureHash = require('crypto').createHash('sha1').update(seen[key].picture).digest('hex');
      if (seen[key]) delete seen[key].picture;
    }
    process.stdout.write(JSON.stringify(seen) + '\n');
  }
})();
