'use strict';

const express = require('express');

const app = express();
const port = Number(process.env.PORT || 3000);

app.get('/', (_req, res) => {
  res.json({ message: 'hello from a distroless image' });
});

app.listen(port, () => {
  console.log(`listening on ${port}`);
});
