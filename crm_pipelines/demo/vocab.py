"""Small built-in vocabularies: names, places, streets, email domains and phone plans per country.

Lists are kept short on purpose; realism comes from combining them (and from popularity weights that
fall off with rank), not from size, so generation needs no downloads and stays fast. Words joined by
``_`` hold a space (``van_Dijk`` is "van Dijk").
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

COUNTRIES = ("DE", "AT", "CH", "GB", "US", "FR", "NL")
COUNTRY_WEIGHTS = (0.55, 0.09, 0.07, 0.10, 0.09, 0.05, 0.05)
CURRENCY_OF_COUNTRY = {
    "DE": "EUR", "AT": "EUR", "CH": "CHF", "GB": "GBP", "US": "USD", "FR": "EUR", "NL": "EUR",
}
DIALING_CODE = {"DE": "49", "AT": "43", "CH": "41", "GB": "44", "US": "1", "FR": "33", "NL": "31"}

# How each source writes a country: (spelling, weight). The CRM lets users type it.
COUNTRY_SPELLINGS = {
    "DE": (("DE", 45), ("Deutschland", 25), ("Germany", 20), ("germany", 4), ("DEU", 3), ("D", 3)),
    "AT": (("AT", 45), ("Österreich", 25), ("Austria", 25), ("AUT", 5)),
    "CH": (("CH", 45), ("Schweiz", 25), ("Switzerland", 22), ("Suisse", 8)),
    "GB": (("GB", 40), ("United Kingdom", 25), ("UK", 25), ("England", 6), ("Great Britain", 4)),
    "US": (("US", 40), ("USA", 25), ("United States", 25), ("United States of America", 10)),
    "FR": (("FR", 50), ("France", 40), ("Frankreich", 10)),
    "NL": (("NL", 40), ("Netherlands", 25), ("Niederlande", 15), ("The Netherlands", 10), ("Nederland", 10)),
}
COUNTRY_ENGLISH_NAME = {
    "DE": "Germany", "AT": "Austria", "CH": "Switzerland", "GB": "United Kingdom",
    "US": "United States", "FR": "France", "NL": "Netherlands",
}

FIRST_NAMES: dict[str, tuple[str, str]] = {  # country -> (female, male)
    "DE": (
        "Anna Maria Sophie Laura Lena Julia Katharina Sarah Lisa Hannah Leonie Johanna Sabine Petra Claudia "
        "Andrea Susanne Nicole Stefanie Martina Monika Ursula Christina Kerstin Birgit Heike Anja Sandra "
        "Melanie Jana Franziska Miriam Carina Elena Emma Mia Clara Charlotte Marie Greta Ida Jutta Renate "
        "Ingrid Gabriele Karin Brigitte Doris Silke Tanja Katrin Daniela Vanessa Jessica Nina Svenja Antje "
        "Ute Bärbel Gisela Ayşe Fatma Elif",
        "Thomas Michael Andreas Stefan Christian Markus Daniel Alexander Jan Tobias Sebastian Matthias "
        "Florian Jürgen Klaus Wolfgang Peter Frank Uwe Dieter Günter Hans Jörg Ralf Sven Dirk Oliver Martin "
        "Tim Lukas Felix Jonas Leon Paul Maximilian Finn Niklas Moritz Philipp David Simon Benedikt "
        "Johannes Karl Heinz Bernd Holger Rainer Manfred Helmut Kai Marcel Dennis Patrick Nils Björn Lars "
        "Jens Torsten Volker Mehmet Ali Emre",
    ),
    "AT": (
        "Anna Maria Lena Katharina Sophie Julia Elisabeth Theresa Magdalena Johanna Barbara Christine "
        "Sabine Monika Andrea Veronika Eva Susanne Birgit Martina Marlene Valentina Hanna Lea Sarah "
        "Stefanie Michaela Karin Elena Verena",
        "Lukas Maximilian Florian David Tobias Jakob Elias Fabian Michael Andreas Thomas Stefan Christian "
        "Markus Josef Johann Franz Georg Wolfgang Gerhard Helmut Manfred Alexander Dominik Philipp "
        "Matthias Martin Bernhard Harald Leopold",
    ),
    "CH": (
        "Anna Laura Sarah Lea Julia Nina Sandra Andrea Nicole Claudia Barbara Monika Ursula Daniela Corinne "
        "Céline Chiara Elena Mia Lara Noemi Jasmin Martina Ruth Verena Sophie Manon Chloé Léa Giulia",
        "Daniel Peter Thomas Martin Andreas Christian Marco Stefan Reto Urs Beat Lukas Simon David Michael "
        "Patrick Roger Pascal Luca Noah Nicolas Samuel Jonas Fabian Dominik Adrian Matteo Julien Luc Mathieu",
    ),
    "GB": (
        "Olivia Amelia Isla Ava Emily Sophie Grace Lily Jessica Charlotte Sarah Emma Rebecca Hannah Lucy "
        "Katie Laura Rachel Claire Helen Elizabeth Victoria Susan Karen Margaret Jennifer Louise Joanne "
        "Natalie Megan",
        "Oliver George Harry Jack Jacob Charlie Thomas James William Joshua Daniel Matthew David Andrew "
        "Richard Mark Paul Michael Christopher Robert Stephen Simon Peter John Edward Samuel Benjamin "
        "Alexander Luke Ryan",
    ),
    "US": (
        "Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Betty Sandra "
        "Ashley Emily Michelle Amanda Melissa Stephanie Rebecca Laura Emma Olivia Sophia Isabella Madison "
        "Abigail Megan Hannah",
        "James Robert John Michael David William Richard Joseph Thomas Christopher Charles Daniel Matthew "
        "Anthony Mark Steven Paul Andrew Joshua Kevin Brian George Ryan Jacob Tyler Brandon Ethan Noah "
        "Liam Logan",
    ),
    "FR": (
        "Marie Camille Léa Manon Chloé Emma Inès Sarah Julie Laura Pauline Céline Nathalie Isabelle Sylvie "
        "Catherine Sophie Valérie Sandrine Aurélie Élodie Anaïs Margaux Clémence Juliette Louise Alice Zoé "
        "Hélène Françoise",
        "Jean Pierre Nicolas Thomas Julien Alexandre Antoine Maxime Lucas Hugo Louis Gabriel Arthur Nathan "
        "Théo Mathieu Sébastien Philippe Laurent Christophe Stéphane Olivier Frédéric Michel François Éric "
        "Guillaume Romain Benoît Jérôme",
    ),
    "NL": (
        "Emma Julia Sophie Lotte Anna Eva Sanne Lisa Fleur Noor Iris Anouk Femke Marloes Linda Monique "
        "Esther Ingrid Petra Wendy Saskia Mariska Inge Karin Maaike Tess Sara Lieke Roos Floor",
        "Daan Sem Lucas Levi Finn Jesse Thijs Bram Ruben Lars Jeroen Bas Niels Sander Maarten Pieter Jan "
        "Kees Henk Willem Joost Martijn Dennis Rob Erik Mark Tim Wouter Koen Stijn",
    ),
}

LAST_NAMES: dict[str, str] = {
    "DE": "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch Bauer "
    "Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hofmann Hartmann Lange Schmitt "
    "Werner Schmitz Krause Meier Lehmann Schmid Schulze Maier Köhler Herrmann König Walter Mayer Huber "
    "Kaiser Fuchs Peters Lang Scholz Möller Weiß Jung Hahn Schubert Vogel Friedrich Keller Günther Frank "
    "Berger Winkler Roth Beck Lorenz Baumann Franke Albrecht Schuster Simon Ludwig Böhm Winter Kraus "
    "Martin Schumacher Krämer Vogt Stein Jäger Otto Sommer Groß Seidel Heinrich Brandt Haas Schreiber "
    "Graf Schulte Dietrich Ziegler Kuhn Kühn Pohl Engel Horn Busch Bergmann Thomas Voigt Sauer Arnold "
    "Wolff Pfeiffer Yılmaz Kaya Nowak Kowalski Nguyen Demir Şahin Öztürk Hansen Jansen Petersen",
    "AT": "Gruber Huber Bauer Wagner Müller Pichler Steiner Moser Mayer Hofer Leitner Berger Fuchs Eder "
    "Fischer Schmid Winkler Weber Schwarz Maier Schneider Reiter Mayr Schmidt Wimmer Egger Brunner Lang "
    "Baumgartner Auer Binder Lechner Wolf Wallner Aigner Ebner Koller Lehner Haas Schuster Holzer Haider "
    "Strasser Karner Hager",
    "CH": "Müller Meier Schmid Keller Weber Huber Schneider Meyer Steiner Fischer Gerber Brunner Baumann "
    "Frei Zimmermann Moser Widmer Wyss Graf Roth Suter Bachmann Kälin Bühler Egli Rossi Bernasconi Favre "
    "Dubois Rochat Lüthi Hofer Kuhn Sutter Aebischer Marti Studer Christen Bucher Fankhauser",
    "GB": "Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts Robinson Thompson "
    "Wright Walker White Edwards Hughes Green Hall Lewis Harris Clarke Patel Jackson Wood Turner Martin "
    "Cooper Hill Ward Morris Moore Clark Lee King Baker Harrison Morgan Allen James Scott Phillips Watson "
    "Davis Parker Price Bennett Young Griffiths Mitchell Kelly Cook Carter Richardson Bailey Collins Bell "
    "Shaw Murphy Miller Cox Richards Khan Marshall Anderson Simpson Ellis Adams Singh O'Brien Begum",
    "US": "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez "
    "Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green "
    "Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Kim Chen Patel O'Connor McCarthy "
    "Schmidt Murphy Cohen Sullivan Brooks",
    "FR": "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefèvre "
    "Michel Garcia David Bertrand Roux Vincent Fournier Morel Girard André Lefebvre Mercier Dupont "
    "Lambert Bonnet François Martinez Legrand Garnier Faure Rousseau Blanc Guérin Muller Henry Roussel "
    "Nicolas Perrin Morin Mathieu Clément Gauthier Dumont Lopez Fontaine Chevalier Robin",
    "NL": "de_Jong Jansen de_Vries van_den_Berg van_Dijk Bakker Janssen Visser Smit Meijer de_Boer Mulder "
    "de_Groot Bos Vos Peters Hendriks van_Leeuwen Dekker Brouwer de_Wit Dijkstra Smits de_Graaf "
    "van_der_Meer van_der_Linden Kok Jacobs de_Haan Vermeulen van_den_Heuvel van_der_Veen van_den_Broek "
    "de_Bruijn de_Bruin van_der_Heijden Schouten van_Beek Willems van_Vliet",
}

# Short forms people use for themselves; applied to a few records so exact name matching misses them.
NICKNAMES = {
    "Alexander": "Alex", "Andreas": "Andi", "Katharina": "Kathi", "Johannes": "Hannes", "Maximilian": "Max",
    "Matthias": "Matze", "Christian": "Chris", "Christina": "Tina", "Sebastian": "Basti",
    "Franziska": "Franzi",
    "Stefanie": "Steffi", "Daniela": "Dani", "Michael": "Micha", "Elisabeth": "Lisi", "William": "Bill",
    "Robert": "Bob", "Elizabeth": "Liz", "Margaret": "Maggie", "Jennifer": "Jen", "Christopher": "Chris",
    "Matthew": "Matt", "Joshua": "Josh", "Benjamin": "Ben", "Samuel": "Sam", "Nicolas": "Nico",
    "Thomas": "Tom", "Richard": "Rick", "Anthony": "Tony", "Patricia": "Patty", "Rebecca": "Becky",
}

EMAIL_DOMAINS = {
    "DE": "gmail.com web.de gmx.de t-online.de gmx.net yahoo.de outlook.de posteo.de freenet.de icloud.com",
    "AT": "gmx.at aon.at gmail.com chello.at outlook.com a1.net",
    "CH": "bluewin.ch gmx.ch gmail.com hotmail.ch sunrise.ch",
    "GB": "gmail.com hotmail.co.uk yahoo.co.uk btinternet.com outlook.com sky.com",
    "US": "gmail.com yahoo.com outlook.com hotmail.com aol.com icloud.com comcast.net",
    "FR": "gmail.com orange.fr free.fr laposte.net sfr.fr hotmail.fr",
    "NL": "gmail.com ziggo.nl kpnmail.nl hotmail.nl outlook.com live.nl",
}
COMPANY_SUFFIX = {
    "DE": "GmbH|AG|GmbH & Co. KG|e.K.", "AT": "GmbH|AG|KG", "CH": "AG|GmbH|SA", "GB": "Ltd|LLP|plc",
    "US": "Inc.|LLC|Corp.", "FR": "SARL|SAS|SA", "NL": "B.V.|N.V.",
}
COMPANY_WORDS = (
    "Nordwind Alpen Rhein Brückner Atlas Sonnen Kestrel Meridian Lindgren Falkenberg Horizon Vektor "
    "Blauwal Eichen Orion Silberstein Pioneer Harbor Summit Quartz"
)
COMPANY_TRADES = (
    "Logistik Consulting Bau Software Medien Handel Design Technik Systems Partners Services Labs"
)

STREETS = {
    "DE": "Hauptstraße Bahnhofstraße Gartenstraße Schulstraße Dorfstraße Bergstraße Lindenstraße "
    "Kirchstraße Waldstraße Ringstraße Am_Markt Mühlenweg Goethestraße Schillerstraße Friedrichstraße "
    "Rosenweg Birkenweg Wiesenweg Kastanienallee Lindenallee Parkstraße Mozartstraße Beethovenstraße "
    "Feldstraße Uhlandstraße Blumenstraße Talstraße Sonnenstraße Kantstraße Berliner_Straße "
    "Hamburger_Straße Frankfurter_Allee Karl-Marx-Straße Heinrich-Heine-Straße",
    "AT": "Hauptstraße Bahnhofstraße Kirchengasse Schulgasse Mariahilfer_Straße Landstraße Linzer_Straße "
    "Grazer_Straße Wiener_Straße Lindengasse Rathausplatz Mozartgasse Dorfstraße Feldgasse Am_Anger",
    "CH": "Bahnhofstrasse Hauptstrasse Dorfstrasse Kirchweg Seestrasse Bergstrasse Schulstrasse "
    "Rue_du_Lac Rue_de_la_Gare Via_Nassa Industriestrasse Gartenstrasse Zürcherstrasse Poststrasse",
    "GB": "High_Street Station_Road Main_Street Park_Road Church_Road Church_Street London_Road "
    "Victoria_Road Green_Lane Manor_Road Church_Lane Park_Avenue The_Avenue Queens_Road New_Road "
    "Grange_Road Kings_Road Albert_Road Mill_Lane North_Street",
    "US": "Main_Street Oak_Street Maple_Avenue Cedar_Lane Elm_Street Washington_Avenue Park_Avenue "
    "Lake_Street Hill_Street Pine_Street 2nd_Street 3rd_Avenue Broadway Sunset_Boulevard "
    "Lincoln_Avenue Jefferson_Street Madison_Avenue Franklin_Street River_Road Spring_Street",
    "FR": "rue_de_la_Paix rue_Victor_Hugo rue_de_la_République boulevard_Saint-Germain rue_Nationale "
    "avenue_Jean_Jaurès rue_Pasteur rue_du_Moulin place_de_la_Gare rue_des_Écoles rue_de_l'Église "
    "avenue_de_la_Liberté chemin_des_Vignes rue_Gambetta rue_Voltaire",
    "NL": "Kerkstraat Dorpsstraat Stationsweg Molenweg Schoolstraat Hoofdstraat Prinsengracht "
    "Keizersgracht Herengracht Julianalaan Wilhelminastraat Beatrixlaan Nieuwstraat Marktplein "
    "Kastanjelaan Eikenlaan Parallelweg Industrieweg Emmastraat Oranjestraat",
}
HOUSE_NUMBER_FIRST = frozenset({"GB", "US", "FR"})
ADDRESS_LINE2 = {
    "DE": "c/o|2. OG|Hinterhaus|Whg. 4|3. Etage links", "AT": "Top 5|Stiege 2/Top 7|c/o",
    "CH": "c/o|2. Stock|Postfach", "GB": "Flat 3|Flat 12|Apartment 2", "US": "Apt 4B|Suite 210|Unit 7|Apt 12",
    "FR": "Bâtiment B|Appartement 12|Escalier C", "NL": "2 hoog|3 hoog|huis",
}


@dataclass(frozen=True)
class City:
    name: str
    region: str
    weight: float
    """Relative population, for sampling."""
    postcode_low: int
    postcode_high: int
    postcode_step: int
    area_code: str
    """Trunk-less dialling code of the city's landlines."""
    subscriber_first_digits: tuple[int, int] = (2, 9)
    """Range of the first digit of local numbers that the numbering plan assigns."""
    outward_codes: tuple[str, ...] = ()
    """GB only: outward codes (SW1A, M1) to which an inward code is appended."""


def _cities(spec: str) -> tuple[City, ...]:
    cities = []
    for line in spec.strip().splitlines():
        name, region, weight, low, high, step, area, *rest = (part.strip() for part in line.split("|"))
        first_digits = tuple(int(d) for d in rest[0].split("-")) if rest else (2, 9)
        outward = tuple(rest[1].split()) if len(rest) > 1 else ()
        numbers = (int(low), int(high), int(step))
        cities.append(City(name, region, float(weight), *numbers, area, first_digits, outward))
    return tuple(cities)


CITIES: dict[str, tuple[City, ...]] = {
    "DE": _cities("""
        Berlin|Berlin|37|10115|14199|1|30
        Hamburg|Hamburg|18|20095|22769|1|40
        München|Bayern|15|80331|81929|1|89
        Köln|Nordrhein-Westfalen|11|50667|51149|1|221
        Frankfurt am Main|Hessen|8|60306|60599|1|69
        Stuttgart|Baden-Württemberg|6|70173|70619|1|711
        Düsseldorf|Nordrhein-Westfalen|6|40210|40629|1|211
        Leipzig|Sachsen|6|04103|04357|1|341
        Dresden|Sachsen|6|01067|01328|1|351
        Hannover|Niedersachsen|5|30159|30669|1|511
        Nürnberg|Bayern|5|90402|90491|1|911
        Bremen|Bremen|6|28195|28779|1|421
        Essen|Nordrhein-Westfalen|6|45127|45359|1|201
        Dortmund|Nordrhein-Westfalen|6|44135|44388|1|231
        Bonn|Nordrhein-Westfalen|3|53111|53229|1|228
        Münster|Nordrhein-Westfalen|3|48143|48167|1|251
        Freiburg im Breisgau|Baden-Württemberg|2|79098|79117|1|761
        Mainz|Rheinland-Pfalz|2|55116|55131|1|6131
        Kiel|Schleswig-Holstein|2|24103|24159|1|431
        Potsdam|Brandenburg|2|14467|14482|1|331
        Erfurt|Thüringen|2|99084|99099|1|361
        Rostock|Mecklenburg-Vorpommern|2|18055|18147|1|381
        Saarbrücken|Saarland|2|66111|66133|1|681
        Magdeburg|Sachsen-Anhalt|2|39104|39130|1|391
        Augsburg|Bayern|3|86150|86199|1|821
        Heidelberg|Baden-Württemberg|2|69115|69126|1|6221
        Regensburg|Bayern|2|93047|93059|1|941
    """),
    "AT": _cities("""
        Wien|Wien|19|1010|1230|10|1
        Graz|Steiermark|3|8010|8055|5|316
        Linz|Oberösterreich|2|4020|4040|10|732
        Salzburg|Salzburg|2|5020|5026|1|662
        Innsbruck|Tirol|1.3|6020|6080|10|512
        Klagenfurt am Wörthersee|Kärnten|1|9020|9073|1|463
        St. Pölten|Niederösterreich|0.6|3100|3107|1|2742
    """),
    "CH": _cities("""
        Zürich|ZH|4.2|8001|8057|1|44
        Genève|GE|2|1201|1209|1|22
        Basel|BS|1.8|4051|4059|1|61
        Lausanne|VD|1.4|1003|1018|1|21
        Bern|BE|1.4|3003|3030|1|31
        Winterthur|ZH|1.1|8400|8411|1|52
        Luzern|LU|0.8|6003|6015|1|41
        St. Gallen|SG|0.8|9000|9016|1|71
        Lugano|TI|0.6|6900|6917|1|91
    """),
    "GB": _cities("""
        London|Greater London|90|0|0|1|20|7-8|SW1A SW3 SW11 SE1 SE15 E1 E14 N1 N7 NW1 NW3 W1 W2 W11 EC1V WC1H
        Manchester|Greater Manchester|6|0|0|1|161|2-4|M1 M3 M4 M13 M14 M20
        Birmingham|West Midlands|11|0|0|1|121|2-4|B1 B5 B15 B29 B30
        Leeds|West Yorkshire|8|0|0|1|113|2-4|LS1 LS2 LS6 LS11 LS17
        Glasgow|Scotland|6|0|0|1|141|2-4|G1 G2 G3 G11 G12 G42
        Edinburgh|Scotland|5|0|0|1|131|2-4|EH1 EH3 EH6 EH10 EH16
        Liverpool|Merseyside|5|0|0|1|151|2-4|L1 L3 L8 L15 L17
        Bristol|Bristol|5|0|0|1|117|2-4|BS1 BS2 BS6 BS8 BS16
        Cardiff|Wales|4|0|0|1|29|2-2|CF10 CF11 CF14 CF24
    """),
    "US": _cities("""
        New York|NY|84|10001|10292|1|212
        Los Angeles|CA|39|90001|90089|1|213
        Chicago|IL|27|60601|60661|1|312
        Houston|TX|23|77001|77099|1|713
        San Francisco|CA|9|94102|94134|1|415
        Seattle|WA|7|98101|98199|1|206
        Boston|MA|7|02108|02137|1|617
        Austin|TX|10|78701|78759|1|512
        Denver|CO|7|80202|80239|1|303
        Miami|FL|4|33125|33199|1|305
        Atlanta|GA|5|30303|30350|1|404
        Philadelphia|PA|16|19102|19154|1|215
    """),
    "FR": _cities("""
        Paris|Île-de-France|21|75001|75020|1|1
        Lyon|Auvergne-Rhône-Alpes|5|69001|69009|1|4
        Marseille|Provence-Alpes-Côte d'Azur|8|13001|13016|1|4
        Toulouse|Occitanie|5|31000|31500|100|5
        Nice|Provence-Alpes-Côte d'Azur|3|06000|06300|100|4
        Nantes|Pays de la Loire|3|44000|44300|100|2
        Strasbourg|Grand Est|3|67000|67200|100|3
        Bordeaux|Nouvelle-Aquitaine|3|33000|33800|100|5
        Lille|Hauts-de-France|2|59000|59800|100|3
    """),
    "NL": _cities("""
        Amsterdam|Noord-Holland|9|1011|1109|1|20
        Rotterdam|Zuid-Holland|6.5|3011|3089|1|10
        Den Haag|Zuid-Holland|5.5|2491|2599|1|70
        Utrecht|Utrecht|3.6|3511|3585|1|30
        Eindhoven|Noord-Brabant|2.3|5611|5658|1|40
        Groningen|Groningen|2.3|9711|9747|1|50
        Tilburg|Noord-Brabant|2.2|5011|5049|1|13
        Almere|Flevoland|2.1|1311|1359|1|36
    """),
}

# Mobile numbers: trunk-less prefixes, the subscriber-number length after them and the range of its
# first digit that the numbering plan assigns. US mobiles look like landlines (area code + 7 digits).
MOBILE_PLANS: dict[str, tuple[tuple[str, ...], int, tuple[int, int]]] = {
    "DE": (tuple("151 152 157 159 162 163 170 171 172 173 174 175 176 177 178 179".split()), 8, (1, 9)),
    "AT": (tuple("650 660 664 676 680 681 699".split()), 7, (1, 9)),
    "CH": (tuple("76 77 78 79".split()), 7, (1, 9)),
    "GB": (tuple("7712 7723 7734 7745 7756 7789 7801 7912 7967".split()), 6, (0, 9)),
    "US": ((), 7, (6, 9)),
    "FR": (("6",), 8, (4, 8)),
    "NL": (("6",), 8, (1, 5)),
}
# Total national number length for landlines: area code + subscriber number.
LANDLINE_LENGTH = {"DE": 10, "AT": 10, "CH": 9, "GB": 10, "US": 10, "FR": 9, "NL": 9}
TRUNK_PREFIX = {"DE": "0", "AT": "0", "CH": "0", "GB": "0", "US": "", "FR": "0", "NL": "0"}

# Placeholder values people type into mandatory fields.
JUNK_EMAILS = ("test@test.com", "noemail@none.com", "a@b.c", "keine@email.de")
JUNK_PHONES = ("0000000000", "n/a", "1234567890", "-")
JUNK_TEXT = ("n/a", "N/A", "-", "xxx", "unknown")


def words(spec: str) -> list[str]:
    """Split a whitespace-separated vocabulary; ``_`` inside a word stands for a space."""
    return [w.replace("_", " ") for w in spec.split()]


_ASCII_FOLD = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue",
                             "ı": "i", "ş": "s", "Ş": "S", "'": "", " ": "", "-": ""})


def ascii_fold(text: str) -> str:
    """Lower-case ASCII form of a name for email local parts: Müller -> mueller, Zoé -> zoe."""
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII_FOLD))
    return "".join(ch for ch in folded if not unicodedata.combining(ch)).lower()


def popularity(count: int, exponent: float = 0.8) -> list[float]:
    """Zipf-like weights: earlier entries in a list are more common (lists are ordered by frequency)."""
    raw = [1.0 / (rank + 1) ** exponent for rank in range(count)]
    total = sum(raw)
    return [w / total for w in raw]
