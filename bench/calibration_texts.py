"""The texts int8 quantization measures activation ranges on: fixed and shipped with featstore,
so a model's int8 graph (and so every text's int8 vector) depends on the model alone, never on
which corpus happened to be featurized first, and is built once per model and cached.

They are deliberately varied (questions, requests, reviews, news, dialogue, code-like and
numeric text, misspellings, a few other languages) and none is drawn from a benchmark corpus.
Each is measured alone, unpadded: padding rows would add activations no real token has.
"""

from __future__ import annotations

import hashlib

TEXTS: tuple[str, ...] = (
    "How do I reset my password if I no longer have access to my old email address?",
    "The train was forty minutes late again this morning.",
    "Can you recommend a good book about the history of mathematics?",
    "I absolutely loved this movie, the acting was superb and the ending surprised me.",
    "Worst purchase ever. It broke after two days and support never answered.",
    "The central bank raised interest rates by a quarter of a percentage point on Tuesday.",
    "Please send me the invoice for order 48213 as a PDF.",
    "what time does the pharmacy on main street close on sundays",
    "She opened the window and the cold air filled the room.",
    "Researchers found that the protein folds differently at higher temperatures.",
    "def mean(xs): return sum(xs) / len(xs)",
    "Error 404: the page you requested could not be found.",
    "My flight got cancelled, can I get a refund or only a voucher?",
    "The recipe calls for two cups of flour, one egg and a pinch of salt.",
    "Is it normal for a puppy to sleep eighteen hours a day?",
    "Thanks so much, that fixed it!",
    "The committee will meet again next quarter to review the budget.",
    "i cant log in to the app it keeps saying my session expired",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The hotel was clean but the breakfast was disappointing and overpriced.",
    "Who won the world cup in 1998?",
    "Turn off the lights in the living room at eleven.",
    "The quarterly report shows revenue of $4.2 million, up 12% from last year.",
    "He said he would call back, but he never did.",
    "Quantum computers use qubits, which can represent zero and one at the same time.",
    "Our team is looking for a senior engineer with experience in distributed systems.",
    "Could you explain the difference between a virus and a bacterium?",
    "The battery lasts all day, but the camera struggles in low light.",
    "Heavy rain is expected across the northern regions over the weekend.",
    "I would like to cancel my subscription effective immediately.",
    "Le musée est fermé le lundi.",
    "¿Dónde está la estación de tren más cercana?",
    "Das Wetter ist heute sehr schön.",
    "The defendant pleaded not guilty to all charges.",
    "Mix the paint thoroughly before applying a second coat.",
    "Why is the sky blue during the day and red at sunset?",
    "The new update drains my phone's battery really fast.",
    "A 3-bedroom apartment downtown now rents for about 2,400 euros a month.",
    "Dear customer, your package has been delivered to the front desk.",
    "The patient reported mild chest pain and shortness of breath.",
    "Let's meet at the cafe near the station at 3 pm tomorrow.",
    "The algorithm runs in O(n log n) time and uses linear memory.",
    "I've been waiting on hold for over an hour, this is ridiculous.",
    "The orchestra played Beethoven's ninth symphony to a full house.",
    "Stocks fell sharply after the company missed its earnings forecast.",
    "How many calories are in a banana?",
    "Remind me to water the plants on Friday.",
    "The bridge was closed for repairs after inspectors found cracks in the supports.",
    "This laptop is lightweight, fast and the keyboard feels great.",
    "Can I change the delivery address after the order has shipped?",
    "Volunteers planted over five hundred trees in the park last spring.",
    "The software license permits modification and redistribution under the same terms.",
    "my son has a fever of 39 degrees should i take him to the doctor",
    "The museum's new exhibition explores the art of ancient Egypt.",
    "Unfortunately we are unable to process your request at this time.",
    "The striker scored twice in the second half to secure the victory.",
    "Is there a vegetarian option on the menu?",
    "The server returned a timeout after 30 seconds; retrying with exponential backoff.",
    "Global temperatures have risen by about 1.1 degrees Celsius since pre-industrial times.",
    "I lost my wallet on the bus yesterday, who should I contact?",
    "The lecture covers linear regression, regularization and cross-validation.",
    "Great service, friendly staff, will definitely come back.",
    "The city council approved a plan to expand bike lanes downtown.",
    "How long does it take to boil an egg?",
    "The contract may be terminated by either party with thirty days written notice.",
    "ok see you later",
    "The spacecraft entered orbit around Mars after a seven-month journey.",
    "My internet connection drops every evening around eight.",
    "The novel follows three generations of a family living on a small island.",
    "Please confirm your identity by entering the code we sent to your phone.",
    "Symptoms include headache, fatigue and loss of taste or smell.",
    "The band announced a world tour starting in March.",
    "Why was I charged twice for the same order?",
    "Add salt to taste and simmer for another ten minutes.",
    "The election results will be announced late tonight.",
    "SELECT name, count(*) FROM users GROUP BY name ORDER BY 2 DESC;",
    "It's not you, it's me.",
    "The glacier has retreated nearly a kilometre over the past fifty years.",
    "Where can I find the user manual for this printer?",
    "Tickets sold out within minutes of going on sale.",
    "The startup raised 15 million dollars in its latest funding round.",
    "I'm allergic to peanuts, does this dish contain any nuts?",
    "The professor's office hours are on Tuesdays and Thursdays.",
    "Honestly the sequel was boring and way too long.",
    "Wind turbines generated a record share of the country's electricity last year.",
    "Can you translate this sentence into French for me?",
    "The road to the village is blocked by a fallen tree.",
    "Our records show that your payment was received on the 14th.",
    "The kids built a sandcastle and watched the tide wash it away.",
    "What are the side effects of this medication?",
    "The firmware update fixes a bug that caused the device to reboot randomly.",
    "I think we should take a different approach to this problem.",
    "The river flooded the lower part of town after three days of rain.",
    "Thank you for your patience while we investigate the issue.",
    "This is the third time I'm reporting the same problem.",
    "The painting sold at auction for a record price.",
    "Do you ship internationally, and how much does it cost?",
    "Neurons communicate through electrical and chemical signals.",
    "The meeting has been moved to room 204.",
    "He trained for months and finally ran the marathon in under four hours.",
    "Please do not reply to this automated message.",
    "The airline lost my luggage and nobody can tell me where it is.",
    "A balanced diet includes fruits, vegetables, whole grains and protein.",
    "The film won three awards at the festival, including best director.",
    "How do I export my contacts to a CSV file?",
    "The factory will close at the end of the year, affecting 300 workers.",
    "Yesterday I saw a fox crossing the road near our house.",
    "Your account balance is lower than the minimum required.",
    "The theory was later confirmed by a series of independent experiments.",
)


def samples(long_every: int = 8, joined: int = 12) -> list[str]:
    """Every text alone, and after every `long_every` texts one longer sample joining
    `joined` of them, so positions up to a couple of hundred tokens are measured too."""
    n = len(TEXTS)
    out: list[str] = []
    for i, text in enumerate(TEXTS):
        out.append(text)
        if (i + 1) % long_every == 0:
            out.append(" ".join(TEXTS[(i + 5 * j) % n] for j in range(joined)))
    return out


def digest() -> str:
    """What the quantized graph's cache key records of the calibration texts."""
    return hashlib.sha256("\n".join(samples()).encode()).hexdigest()[:16]
