// Reads an email's HTML on stdin and prints what @jsx-email/doiuse-email (caniemail data)
// reports for the clients our readers use, as JSON: {"errors": [...], "warnings": [...]}.
// Always exits 0 when the check ran, errors or not: tests/test_email_clients.py judges them.
// Install with `npm ci --prefix tests/email_clients`.
import { doIUseEmail } from '@jsx-email/doiuse-email';

const EMAIL_CLIENTS = ['gmail.*', 'outlook.*', 'apple-mail.*', 'yahoo.*'];

const chunks = [];
for await (const chunk of process.stdin) {
  chunks.push(chunk);
}
const html = Buffer.concat(chunks).toString('utf8');

const result = doIUseEmail(html, { emailClients: EMAIL_CLIENTS });
process.stdout.write(
  `${JSON.stringify({ errors: result.errors ?? [], warnings: result.warnings ?? [] })}\n`,
);
